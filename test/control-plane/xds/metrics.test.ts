// The xDS metrics: responses counted in plain numbers reach the Prometheus counters when they are read, once.
import { describe, expect, it } from 'vitest';
import { createXdsMetrics } from '../../../control-plane/xds/metrics.ts';

describe('createXdsMetrics countSent', () => {
  it('adds counted responses to skein_xds_pushes_total and skein_xds_bytes_sent_total when scraped, without double counting', async () => {
    const m = createXdsMetrics();
    m.countSent('EDS', 'delta', 100);
    m.countSent('EDS', 'delta', 50);
    m.countSent('EDS', 'sotw', 7);
    m.countSent('CDS', 'sotw', 1000);
    const first = await m.registry.metrics();
    expect(first).toMatch(/^skein_xds_pushes_total\{type="EDS"\} 3$/m);
    expect(first).toMatch(/^skein_xds_pushes_total\{type="CDS"\} 1$/m);
    expect(first).toMatch(/^skein_xds_bytes_sent_total\{type="EDS",mode="delta"\} 150$/m);
    expect(first).toMatch(/^skein_xds_bytes_sent_total\{type="EDS",mode="sotw"\} 7$/m);
    expect(first).toMatch(/^skein_xds_bytes_sent_total\{type="CDS",mode="sotw"\} 1000$/m);
    // A second read adds nothing; later responses add to what was there.
    expect(await m.registry.metrics()).toMatch(/^skein_xds_pushes_total\{type="EDS"\} 3$/m);
    m.countSent('EDS', 'delta', 25);
    const pushes = await m.registry.getSingleMetric('skein_xds_pushes_total')?.get();
    expect(pushes?.values.find((v) => v.labels.type === 'EDS')?.value).toBe(4);
    expect(await m.registry.metrics()).toMatch(/^skein_xds_bytes_sent_total\{type="EDS",mode="delta"\} 175$/m);
  });
});
