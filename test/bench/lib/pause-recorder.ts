// Preloaded into a benchmarked sidecar (node --import): records its GC pauses on the host's monotonic clock, dumped on SIGUSR2.
import { renameSync, writeFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { monotonicMs, pauseLogPath } from './tail.ts';

// Flat triples: start (monotonic ms, as the load generator records its requests), duration (ms), V8's GC kind.
const pauses: number[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) pauses.push(monotonicMs(e.startTime), e.duration, (e as { detail?: { kind?: number } }).detail?.kind ?? 0);
}).observe({ entryTypes: ['gc'] });

// Writes what was recorded since the last signal and starts afresh (the first signal, before a run, clears).
process.on('SIGUSR2', () => {
  const path = pauseLogPath(process.pid);
  writeFileSync(`${path}.tmp`, JSON.stringify(pauses));
  renameSync(`${path}.tmp`, path);
  pauses.length = 0;
});
