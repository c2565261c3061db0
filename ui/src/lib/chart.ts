/** Geometry for the small SVG line charts: nice ticks and the mapping from values to pixels. */

export type Point = { x: number; y: number };

/** One line of a chart. */
export type Series = {
  /** data-series on each point */
  id: string;
  label: string;
  points: Point[];
  /** a CSS colour */
  color: string;
  dashed?: boolean;
};

/**
 * About `count` round tick values (1, 2 or 5 times a power of ten) covering [min, max]; the
 * first is ≤ min and the last ≥ max.
 */
export function niceTicks(min: number, max: number, count = 4): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const first = Math.floor(min / step) * step;
  const ticks: number[] = [];
  for (let i = 0; i <= 50; i++) {
    // 0.1 + 0.2: keep the digits the step has
    const v = Number((first + i * step).toPrecision(12));
    ticks.push(v);
    if (v >= max && ticks.length > 1) break;
  }
  return ticks;
}

/**
 * Whole-number ticks for steps `first`..`last` (first is 1, or 0 when something was measured
 * before the first step): about `count` of them, always including both ends.
 */
export function stepTicks(last: number, count = 6, first = 1): number[] {
  const end = Math.max(first + 1, Math.floor(last));
  if (end - first < count) return Array.from({ length: end - first + 1 }, (_, i) => first + i);
  const step = niceTicks(0, end - first, count)[1] ?? 1;
  const ticks = [first];
  for (let v = step; v < end; v += step) if (v - first >= step / 3 && end - v >= step / 3) ticks.push(v);
  ticks.push(end);
  return ticks;
}

export type Frame = { width: number; height: number; left: number; right: number; top: number; bottom: number };

/** Maps a value range onto a pixel range. */
export function linear(domain: [number, number], range: [number, number]): (v: number) => number {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

/** The SVG path through the points, in order. */
export function pathOf(points: Point[], x: (v: number) => number, y: (v: number) => number): string {
  return points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ');
}
