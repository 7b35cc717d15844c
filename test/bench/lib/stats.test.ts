// Percentiles for the benchmark's latency samples and histogram deltas read from Prometheus text.
import { describe, expect, it } from 'vitest';
import { histogramDelta, histogramQuantile, readHistogram } from './prom-text.ts';
import { percentile, summarize } from './stats.ts';

describe('summarize', () => {
  it('uses nearest-rank percentiles and ignores samples that never arrived (NaN)', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    const s = summarize([...values, Number.NaN]);
    expect(s).toMatchObject({ count: 100, p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
    expect(percentile([5], 99)).toBe(5);
    expect(summarize([]).p99).toBeNaN();
  });
});

const EXPOSITION = (n: number) => `# HELP skein_xds_push_convergence_seconds Time from a registry change to the ACK
# TYPE skein_xds_push_convergence_seconds histogram
skein_xds_push_convergence_seconds_bucket{le="0.1"} ${n}
skein_xds_push_convergence_seconds_bucket{le="0.25"} ${2 * n}
skein_xds_push_convergence_seconds_bucket{le="+Inf"} ${2 * n}
skein_xds_push_convergence_seconds_sum ${0.3 * n}
skein_xds_push_convergence_seconds_count ${2 * n}
skein_xds_pushes_total{type="EDS"} 7
`;

describe('Prometheus histograms', () => {
  it('reads buckets, subtracts a before-state, and interpolates quantiles like histogram_quantile', () => {
    const before = readHistogram(EXPOSITION(10), 'skein_xds_push_convergence_seconds');
    const after = readHistogram(EXPOSITION(30), 'skein_xds_push_convergence_seconds');
    if (!after) throw new Error('histogram not found');
    const d = histogramDelta(before, after);
    expect(d.count).toBe(40);
    expect(d.sum).toBeCloseTo(6);
    expect(histogramQuantile(d, 0.5)).toBeCloseTo(0.1);
    expect(histogramQuantile(d, 0.75)).toBeCloseTo(0.175);
    expect(readHistogram(EXPOSITION(1), 'skein_missing')).toBeUndefined();
  });
});
