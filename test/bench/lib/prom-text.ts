// Reads histograms from a Prometheus text exposition (the control plane's /metrics), for before/after deltas.

export interface Histogram {
  /** Upper bound (seconds, Infinity for +Inf) → cumulative count, summed over every label set. */
  readonly buckets: Map<number, number>;
  readonly sum: number;
  readonly count: number;
}

/** The histogram `name`, all label sets added together; undefined when the exposition does not have it. */
export function readHistogram(text: string, name: string): Histogram | undefined {
  const buckets = new Map<number, number>();
  let sum = 0;
  let count = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const space = line.lastIndexOf(' ');
    const value = Number(line.slice(space + 1));
    const head = line.slice(0, space);
    if (head.startsWith(`${name}_bucket`)) {
      const le = /le="([^"]+)"/.exec(head)?.[1];
      if (le === undefined) continue;
      const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
      buckets.set(bound, (buckets.get(bound) ?? 0) + value);
      seen = true;
    } else if (head.startsWith(`${name}_sum`)) {
      sum += value;
      seen = true;
    } else if (head.startsWith(`${name}_count`)) {
      count += value;
      seen = true;
    }
  }
  return seen ? { buckets, sum, count } : undefined;
}

/** after − before, bucket by bucket. */
export function histogramDelta(before: Histogram | undefined, after: Histogram): Histogram {
  const buckets = new Map<number, number>();
  for (const [le, n] of after.buckets) buckets.set(le, n - (before?.buckets.get(le) ?? 0));
  return { buckets, sum: after.sum - (before?.sum ?? 0), count: after.count - (before?.count ?? 0) };
}

/** The q-quantile (0..1) estimated like Prometheus's histogram_quantile: linear within the bucket. */
export function histogramQuantile(h: Histogram, q: number): number {
  if (h.count <= 0) return Number.NaN;
  const bounds = [...h.buckets.keys()].sort((a, b) => a - b);
  const rank = q * h.count;
  let prevBound = 0;
  let prevCount = 0;
  for (const bound of bounds) {
    const c = h.buckets.get(bound) ?? 0;
    if (c >= rank) {
      if (!Number.isFinite(bound)) return prevBound;
      const inBucket = c - prevCount;
      return inBucket > 0 ? prevBound + ((bound - prevBound) * (rank - prevCount)) / inBucket : bound;
    }
    prevBound = bound;
    prevCount = c;
  }
  return prevBound;
}
