/**
 * Display helpers. Each keeps the raw value untouched; screens put the raw value in
 * `data-value` and the formatted one in the cell.
 */

function trimmed(value: number, digits: number): string {
  // 134.5, 1.24, 98.9 — significant digits without trailing zeros
  const fixed = value.toFixed(digits);
  return fixed.includes('.') ? fixed.replace(/0+$/, '').replace(/\.$/, '') : fixed;
}

function scaled(value: number, units: readonly [number, string][], space: string): string | null {
  // units from the largest down; three significant digits below 10 (1.24B), one decimal above (134.5M)
  for (let i = 0; i < units.length; i++) {
    const [size, suffix] = units[i]!;
    if (Math.abs(value) < size) continue;
    const x = value / size;
    const text = trimmed(x, Math.abs(x) >= 10 ? 1 : 2);
    // 999.96M rounds to "1000M": show it as "1B" when there is a larger unit
    if (Math.abs(Number(text)) >= 1000 && i > 0) {
      const [bigger, biggerSuffix] = units[i - 1]!;
      return `${trimmed(value / bigger, 2)}${space}${biggerSuffix}`;
    }
    return `${text}${space}${suffix}`;
  }
  return null;
}

/** Number of weights: 134_515_008 → "134.5M", 1_235_814_400 → "1.24B". */
export function formatParameters(count: number | null | undefined): string {
  if (count === null || count === undefined || !Number.isFinite(count)) return '—';
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'K'],
  ];
  return scaled(count, units, '') ?? String(Math.round(count));
}

/** Bytes in decimal units: 98_903_328 → "98.9 MB", 1_500 → "1.5 kB". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  const units: [number, string][] = [
    [1e12, 'TB'],
    [1e9, 'GB'],
    [1e6, 'MB'],
    [1e3, 'kB'],
  ];
  return scaled(bytes, units, ' ') ?? `${Math.round(bytes)} B`;
}

/** Whole numbers with thousands separators: 8192 → "8,192"; null → "—". */
export function formatCount(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  const sign = value < 0 ? '-' : '';
  const digits = String(Math.round(Math.abs(value)));
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Context length in tokens: 8192 → "8,192". */
export function formatContextLength(tokens: number | null | undefined): string {
  return formatCount(tokens);
}

/** 0..1 → "42%" (clamped). */
export function formatFraction(fraction: number): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  // the epsilon keeps 0.57 at 57% despite 0.57 * 100 = 56.99999…
  return `${Math.floor(f * 100 + 1e-9)}%`;
}

/** The raw value a table cell carries in `data-value`: numbers as written, null as ''. */
export function rawValue(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  return String(value);
}

/** Generation speed: 41.25 → "41.3 tokens/s", 212.5 → "213 tokens/s" (one decimal below 100). */
export function formatTokensPerSecond(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return '—';
  const digits = Math.abs(rate) < 100 ? 1 : 0;
  return `${rate.toFixed(digits)} tokens/s`;
}

/** A duration: 42 → "42 s", 130 → "2 min 10 s", 3725 → "1 h 02 min". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** A loss: four significant digits, 5.42461 → "5.425", 0.012345 → "0.01235". */
export function formatLoss(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return String(Number(value.toPrecision(4)));
}

/** A learning rate in scientific notation: 0.0002 → "2.0e-4", 0 → "0". */
export function formatLearningRate(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  if (value === 0) return '0';
  return value.toExponential(1).replace('e+', 'e');
}

/** A plain number as people write it: 0.1 + 0.2 → "0.3", 32 → "32", NaN → "—". */
export function formatNumber(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return String(Number(value.toPrecision(digits)));
}
