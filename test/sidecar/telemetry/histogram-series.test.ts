// A histogram series counted in plain numbers scrapes exactly as prom-client's own observe() would (guards its internals).
import { describe, it, expect } from 'vitest';
import { Histogram, Registry } from 'prom-client';
import { HistogramSeries } from '../../../sidecar/telemetry/histogram-series.ts';
import { DataPlaneMetrics } from '../../../sidecar/telemetry/metrics.ts';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const VALUES = [0, 0.0004, 0.001, 0.005, 0.01, 0.05, 0.7, 1, 3, 12.5, 0.0099];

function histogram(registry: Registry, series: HistogramSeries[] = []): Histogram<'direction' | 'cluster'> {
  return new Histogram({
    name: 'h_seconds',
    help: 'test',
    labelNames: ['direction', 'cluster'],
    buckets: BUCKETS,
    registers: [registry],
    collect() {
      for (const s of series) s.flush(this);
    },
  });
}

describe('HistogramSeries', () => {
  it('exports the same buckets, sum and count as observe(), across scrapes and a registry reset', async () => {
    const direct = new Registry();
    const h = histogram(direct);
    const batched = new Registry();
    const a = new HistogramSeries({ direction: 'outbound', cluster: 'a' }, BUCKETS);
    const b = new HistogramSeries({ direction: 'inbound', cluster: 'b' }, BUCKETS);
    histogram(batched, [a, b]);
    for (const v of VALUES) {
      h.labels('outbound', 'a').observe(v);
      a.observe(v);
    }
    h.labels('inbound', 'b').observe(0.02);
    b.observe(0.02);
    expect(await batched.metrics()).toBe(await direct.metrics());
    h.labels('outbound', 'a').observe(0.3);
    a.observe(0.3);
    expect(await batched.metrics()).toBe(await direct.metrics());
    batched.resetMetrics();
    expect(await batched.metrics()).toBe(await direct.metrics());
    expect(await direct.metrics()).toContain('h_seconds_count{direction="outbound",cluster="a"} 12');
  });

  it('shows no series before the first observation', async () => {
    const r = new Registry();
    histogram(r, [new HistogramSeries({ direction: 'outbound', cluster: 'idle' }, BUCKETS)]);
    expect(await r.metrics()).not.toContain('idle');
  });

  it('the data-plane metrics count requests and durations per cluster', async () => {
    const r = new Registry();
    const m = new DataPlaneMetrics(r);
    const c = m.cluster('outbound', 'web');
    c.observe(200, 0.0003);
    c.observe(200, 0.02);
    c.observe(503, 0.001);
    m.reusedCount.inc();
    const text = await r.metrics();
    expect(text).toContain('skein_requests_total{direction="outbound",cluster="web",code="200"} 2');
    expect(text).toContain('skein_requests_total{direction="outbound",cluster="web",code="503"} 1');
    expect(text).toContain('skein_request_duration_seconds_bucket{le="0.001",direction="outbound",cluster="web"} 2');
    expect(text).toContain('skein_request_duration_seconds_count{direction="outbound",cluster="web"} 3');
    expect(text).toContain('skein_upstream_requests_reused_total 1');
    c.observe(200, 0.5);
    expect(await r.metrics()).toContain('skein_requests_total{direction="outbound",cluster="web",code="200"} 3');
  });
});
