// One labelled series of a prom-client Histogram counted in plain numbers per request and copied in when it is scraped.
import type { Histogram } from 'prom-client';

/**
 * What prom-client 15 keeps per series of a Histogram (`hashMap` values; see its lib/histogram.js): per upper bound
 * the count of observations that fell in that bucket alone (export makes them cumulative), their sum and count.
 * test/sidecar/telemetry/histogram-series.test.ts checks that a series copied in scrapes exactly as observe() would.
 */
interface SeriesState {
  labels: Record<string, string>;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}
type HistogramState = { hashMap: Record<string, SeriesState> };

/**
 * prom-client's child observe() hashes the label values into a string and looks the series up on every call, and
 * indexes buckets by the bound as a property name (a number-to-string conversion); on the request path that showed
 * as ~5% of the client sidecar's CPU. This counts with an index into an array; `flush` (from the histogram's collect)
 * copies the totals into the series prom-client exports.
 */
export class HistogramSeries {
  private readonly labels: Record<string, string>;
  private readonly bounds: readonly number[];
  /** Non-cumulative counts per bucket; the last slot is above every bound (+Inf only). */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;
  private state: SeriesState | undefined;
  private map: HistogramState['hashMap'] | undefined;

  constructor(labels: Record<string, string>, bounds: readonly number[]) {
    this.labels = labels;
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    (this.counts[i] as number)++;
    this.sum += value;
    this.count++;
  }

  /** Writes the totals into `histogram`'s series for these labels (created through prom-client's own zero()). */
  flush(histogram: Histogram<string>): void {
    // Like observe(), a series appears once it has an observation.
    if (this.count === 0) return;
    const map = (histogram as unknown as HistogramState).hashMap;
    if (this.state === undefined || this.map !== map) {
      // zero() makes the series under prom-client's own key, holding our labels object.
      histogram.zero(this.labels);
      this.state = Object.values(map).find((s) => s.labels === this.labels);
      this.map = map;
      if (this.state === undefined) throw new Error('prom-client Histogram internals changed: no series after zero() (see histogram-series.ts)');
    }
    const s = this.state;
    for (let i = 0; i < this.bounds.length; i++) s.bucketValues[this.bounds[i] as number] = this.counts[i] as number;
    s.sum = this.sum;
    s.count = this.count;
  }
}
