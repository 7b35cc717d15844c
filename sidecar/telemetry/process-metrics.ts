// The sidecar's process metrics: prom-client's default collectors one by one, CPU time counted here (see below).
import { createRequire } from 'node:module';
import { Counter, type Registry } from './prom.ts';

const require = createRequire(import.meta.url);

type Collector = (registry: Registry, config: { prefix: string; eventLoopMonitoringPrecision?: number }) => void;

/**
 * prom-client's collectDefaultMetrics() minus its processCpuTotal, which requires @opentelemetry/api (for exemplars we
 * do not use): ~8 MiB per sidecar. The three CPU counters keep prom-client's names and meaning.
 */
const COLLECTORS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
] as const;

/** Registers process_* and nodejs_* metrics under `prefix` (e.g. skein_sidecar_process_resident_memory_bytes). */
export function registerProcessMetrics(registry: Registry, prefix: string): void {
  for (const name of COLLECTORS) {
    if (name === 'processResources' && typeof process.getActiveResourcesInfo !== 'function') continue;
    (require(`prom-client/lib/metrics/${name}.js`) as Collector)(registry, { prefix, eventLoopMonitoringPrecision: 10 });
  }
  registerCpuCounters(registry, prefix);
}

function registerCpuCounters(registry: Registry, prefix: string): void {
  const registers = [registry];
  let last = process.cpuUsage();
  // As in prom-client's processCpuTotal: the first counter's collect() (metrics are collected in registration order)
  // reads the CPU time once and advances all three.
  const user: Counter = new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers,
    collect() {
      const now = process.cpuUsage();
      const userS = (now.user - last.user) / 1e6;
      const systemS = (now.system - last.system) / 1e6;
      last = now;
      user.inc(userS);
      system.inc(systemS);
      total.inc(userS + systemS);
    },
  });
  const system = new Counter({ name: `${prefix}process_cpu_system_seconds_total`, help: 'Total system CPU time spent in seconds.', registers });
  const total = new Counter({ name: `${prefix}process_cpu_seconds_total`, help: 'Total user and system CPU time spent in seconds.', registers });
}
