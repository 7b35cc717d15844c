// The sidecar's process metrics and prom-client classes loaded without prom-client's index.
import * as promClient from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerProcessMetrics } from '../../../sidecar/telemetry/process-metrics.ts';
import { Counter, Gauge, Histogram, Registry } from '../../../sidecar/telemetry/prom.ts';

describe('prom.ts', () => {
  it('gives the very classes prom-client exports, so registries and metrics mix with code importing the index', () => {
    expect(Registry).toBe(promClient.Registry);
    expect(Counter).toBe(promClient.Counter);
    expect(Gauge).toBe(promClient.Gauge);
    expect(Histogram).toBe(promClient.Histogram);
  });
});

describe('registerProcessMetrics', () => {
  it('exports prom-client’s default process and nodejs metrics, CPU time included, under the prefix', async () => {
    const registry = new Registry();
    registerProcessMetrics(registry, 'skein_sidecar_');
    const burn = Date.now() + 30;
    while (Date.now() < burn) {
      /* spend a little CPU */
    }
    const text = await registry.metrics();
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_cpu_system_seconds_total',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'process_start_time_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_external_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_version_info',
    ])
      expect(text).toContain(`skein_sidecar_${name}`);
    const cpu = Number(/^skein_sidecar_process_cpu_seconds_total (\S+)$/m.exec(text)?.[1]);
    const user = Number(/^skein_sidecar_process_cpu_user_seconds_total (\S+)$/m.exec(text)?.[1]);
    const system = Number(/^skein_sidecar_process_cpu_system_seconds_total (\S+)$/m.exec(text)?.[1]);
    expect(cpu).toBeGreaterThan(0);
    expect(cpu).toBeCloseTo(user + system, 6);
  });
});
