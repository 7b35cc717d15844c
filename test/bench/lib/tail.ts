// Where the open-loop tail goes: slow requests set against the sidecars' GC pauses, and each process's run-queue wait.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants } from 'node:perf_hooks';
import { percentileSorted } from './stats.ts';

const MONOTONIC_OFFSET_MS = Number(process.hrtime.bigint()) / 1e6 - performance.now();

/** A performance.now() reading of this process as ms on CLOCK_MONOTONIC: the clock perf and every process here share. */
export function monotonicMs(performanceNow: number): number {
  return performanceNow + MONOTONIC_OFFSET_MS;
}

/** Where a process preloaded with pause-recorder.ts writes its GC pauses on SIGUSR2. */
export function pauseLogPath(pid: number): string {
  return join(tmpdir(), `skein-bench-pauses-${pid}.json`);
}

/** One GC pause: start in monotonic ms (monotonicMs), duration in ms, V8's kind (perf_hooks.constants.NODE_PERFORMANCE_GC_*). */
export interface Pause {
  readonly start: number;
  readonly ms: number;
  readonly kind: number;
}

/** Asks a preloaded process for the pauses recorded since the last call (the first call just clears them). */
export async function takePauses(pid: number, timeoutMs = 3000): Promise<Pause[]> {
  const path = pauseLogPath(pid);
  rmSync(path, { force: true });
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} wrote no pause log to ${path} (is pause-recorder.ts preloaded?)`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const flat = JSON.parse(readFileSync(path, 'utf8')) as number[];
  rmSync(path, { force: true });
  const out: Pause[] = [];
  for (let i = 0; i + 2 < flat.length; i += 3) out.push({ start: flat[i] as number, ms: flat[i + 1] as number, kind: flat[i + 2] as number });
  return out;
}

/** The run-queue wait of a process's main thread so far, ns (time it was runnable but another task had its CPU). */
export function runQueueNs(pid: number): number {
  // /proc/<pid>/task/<pid>/schedstat: time on CPU, time waiting on a run queue (ns), timeslices.
  const fields = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(/\s+/);
  return Number(fields[1]);
}

/** Requests as the load generator dumps them: pairs of (scheduled time in monotonic ms, latency in ms). */
export type RequestTimes = Float64Array;

export interface TailFigures {
  /** GC pauses per second of the run and their share of it, per sidecar role. */
  readonly gc: Record<string, { perSecond: number; majorPerSecond: number; timeShare: number; maxMs: number }>;
  /** Share of all requests, and of the slowest 1%, that overlapped a pause of any recorded process. */
  readonly overlapAll: number;
  readonly overlapSlow: number;
  /** p99 latency of every request, and of the requests that overlapped no pause (ms). */
  readonly p99: number;
  readonly p99NoPause: number;
}

/** Sets requests against pauses: a request overlaps a pause when [scheduled, scheduled + latency] meets it. */
export function attributeTail(requests: RequestTimes, pausesByRole: Readonly<Record<string, readonly Pause[]>>): TailFigures {
  const n = requests.length / 2;
  const all = Object.values(pausesByRole)
    .flat()
    .map((p) => [p.start, p.start + p.ms] as const)
    .sort((a, b) => a[0] - b[0]);
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  const latencies: number[] = [];
  const clean: number[] = [];
  const overlapped = new Uint8Array(n);
  const longest = all.reduce((m, p) => Math.max(m, p[1] - p[0]), 0);
  for (let i = 0; i < n; i++) {
    const at = requests[2 * i] as number;
    const lat = requests[2 * i + 1] as number;
    first = Math.min(first, at);
    last = Math.max(last, at + lat);
    latencies.push(lat);
    // A pause that overlaps starts no earlier than `at - longest`: find the first such by binary search, then scan
    // while pauses start before the request ended.
    let lo = 0;
    let hi = all.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((all[mid] as readonly [number, number])[0] < at - longest) lo = mid + 1;
      else hi = mid;
    }
    let hit = false;
    for (let j = lo; j < all.length && (all[j] as readonly [number, number])[0] <= at + lat; j++) {
      if ((all[j] as readonly [number, number])[1] >= at) {
        hit = true;
        break;
      }
    }
    overlapped[i] = hit ? 1 : 0;
    if (!hit) clean.push(lat);
  }
  const span = Math.max(1, last - first);
  const gc: TailFigures['gc'] = {};
  for (const [role, pauses] of Object.entries(pausesByRole)) {
    const inRun = pauses.filter((p) => p.start >= first && p.start <= last);
    const total = inRun.reduce((s, p) => s + p.ms, 0);
    const major = inRun.filter((p) => p.kind === constants.NODE_PERFORMANCE_GC_MAJOR).length;
    gc[role] = { perSecond: (inRun.length / span) * 1000, majorPerSecond: (major / span) * 1000, timeShare: total / span, maxMs: inRun.reduce((m, p) => Math.max(m, p.ms), 0) };
  }
  const p99 = percentileSorted([...latencies].sort((a, b) => a - b), 99);
  let hits = 0;
  for (let i = 0; i < n; i++) hits += overlapped[i] as number;
  // The slowest 1% (at least one request): what the p99 is made of.
  const slow = Math.max(1, Math.floor(n / 100));
  const slowest = Array.from({ length: n }, (_, i) => i)
    .sort((a, b) => (latencies[b] as number) - (latencies[a] as number))
    .slice(0, slow);
  const slowHit = slowest.reduce((s, i) => s + (overlapped[i] as number), 0);
  return {
    gc,
    overlapAll: n > 0 ? hits / n : Number.NaN,
    overlapSlow: n > 0 ? slowHit / slow : Number.NaN,
    p99,
    p99NoPause: percentileSorted(clean.sort((a, b) => a - b), 99),
  };
}
