#!/usr/bin/env python3
"""Draws the loss curves of `modelfactory train` logs (its key=value lines) as one SVG.

Usage: python3 docs/runs/plot_curves.py out.svg label=run.log [label=run.log ...]
"""
import sys

W, H, PAD = 720, 360, 48
COLOURS = ["#2563eb", "#dc2626", "#059669", "#9333ea"]


def read(path):
    steps, evals = [], []
    for line in open(path, encoding="utf-8"):
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if line.startswith("step="):
            steps.append((int(fields["step"]), float(fields["loss"])))
        elif line.startswith("eval "):
            evals.append((int(fields["step"]), float(fields["loss"])))
    return steps, evals


def main():
    out, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    data = [(label, *read(path)) for label, path in runs]
    xs = [s for _, st, ev in data for s, _ in st + ev]
    ys = [l for _, st, ev in data for _, l in st + ev]
    x0, x1, y0, y1 = 0, max(xs), 0, max(ys) * 1.05
    sx = lambda x: PAD + (x - x0) / (x1 - x0) * (W - 2 * PAD)
    sy = lambda y: H - PAD - (y - y0) / (y1 - y0) * (H - 2 * PAD)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<line x1="{PAD}" y1="{H-PAD}" x2="{W-PAD}" y2="{H-PAD}" stroke="#444"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H-PAD}" stroke="#444"/>',
             f'<text x="{W/2}" y="{H-12}" text-anchor="middle">optimiser step</text>',
             f'<text x="14" y="{H/2}" transform="rotate(-90 14 {H/2})" text-anchor="middle">loss per trained token</text>']
    for v in range(0, int(y1) + 1):
        parts.append(f'<text x="{PAD-8}" y="{sy(v)+4}" text-anchor="end">{v}</text>')
        parts.append(f'<line x1="{PAD}" y1="{sy(v)}" x2="{W-PAD}" y2="{sy(v)}" stroke="#eee"/>')
    for step in range(0, x1 + 1, 20):
        parts.append(f'<text x="{sx(step)}" y="{H-PAD+16}" text-anchor="middle">{step}</text>')
    for i, (label, steps, evals) in enumerate(data):
        c = COLOURS[i % len(COLOURS)]
        pts = " ".join(f"{sx(s):.1f},{sy(l):.1f}" for s, l in steps)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-opacity="0.45" points="{pts}"/>')
        pts = " ".join(f"{sx(s):.1f},{sy(l):.1f}" for s, l in evals)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2.5" points="{pts}"/>')
        parts.append(f'<text x="{W-PAD-150}" y="{PAD+18*i}" fill="{c}">{label}: eval (bold), train</text>')
    parts.append("</svg>")
    open(out, "w", encoding="utf-8").write("\n".join(parts))


if __name__ == "__main__":
    main()
