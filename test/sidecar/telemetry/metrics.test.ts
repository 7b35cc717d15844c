// Per-cluster request metrics: nothing per series until a cluster sees traffic, then the usual series.
import { describe, expect, it } from 'vitest';
import { DataPlaneMetrics } from '../../../sidecar/telemetry/metrics.ts';
import { Registry } from '../../../sidecar/telemetry/prom.ts';

describe('DataPlaneMetrics per cluster', () => {
  it('adds no series for a cluster without traffic', async () => {
    const registry = new Registry();
    const metrics = new DataPlaneMetrics(registry);
    for (let i = 0; i < 100; i++) metrics.cluster('outbound', `outbound|80||svc-${i}.default.svc.cluster.local`);
    const text = await registry.metrics();
    expect(text).not.toContain('svc-');
  });

  it('exports requests, durations and connections once a cluster is used', async () => {
    const registry = new Registry();
    const metrics = new DataPlaneMetrics(registry);
    const m = metrics.cluster('outbound', 'outbound|80||web.default.svc.cluster.local');
    m.observe(200, 0.002);
    m.observe(503, 0.02);
    m.connections.inc();
    const text = await registry.metrics();
    expect(text).toContain('skein_requests_total{direction="outbound",cluster="outbound|80||web.default.svc.cluster.local",code="200"} 1');
    expect(text).toContain('skein_requests_total{direction="outbound",cluster="outbound|80||web.default.svc.cluster.local",code="503"} 1');
    expect(text).toContain('skein_request_duration_seconds_count{direction="outbound",cluster="outbound|80||web.default.svc.cluster.local"} 2');
    expect(text).toContain('skein_upstream_connections{cluster="outbound|80||web.default.svc.cluster.local"} 1');
    expect(metrics.cluster('outbound', 'outbound|80||web.default.svc.cluster.local')).toBe(m);
  });
});
