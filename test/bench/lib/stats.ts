// Summary statistics for benchmark samples: percentiles (nearest rank), mean, and compact formatting.

export interface Summary {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** Nearest-rank percentile of already sorted values (q in 0..100); NaN for no values. */
export function percentileSorted(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((q / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function percentile(values: readonly number[], q: number): number {
  return percentileSorted([...values].sort((a, b) => a - b), q);
}

export function summarize(values: readonly number[]): Summary {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    p50: percentileSorted(sorted, 50),
    p90: percentileSorted(sorted, 90),
    p99: percentileSorted(sorted, 99),
    max: sorted.length ? (sorted[sorted.length - 1] as number) : Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
  };
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Rounds for display and JSON: NaN and infinities become null. */
export function round(value: number, digits = 1): number | null {
  if (!Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function formatMs(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return value >= 1000 ? `${(value / 1000).toFixed(2)}s` : `${value.toFixed(value < 10 ? 1 : 0)}ms`;
}

export function formatBytes(value: number): string {
  if (!Number.isFinite(value)) return '-';
  if (value >= 1 << 20) return `${(value / (1 << 20)).toFixed(1)}MiB`;
  if (value >= 1 << 10) return `${(value / (1 << 10)).toFixed(1)}KiB`;
  return `${Math.round(value)}B`;
}
