// One proxy-benchmark measurement of one setup (direct, haproxy pair, skein pair): open loop, concurrency 1, wrk.
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult } from './open-loop.ts';
import { PinnedProcess } from './pinned-process.ts';
import { cpuSeconds, memoryUsage } from './proc-stats.ts';
import { type CpuShare, cpuBreakdown, SchedTrace } from './sched-trace.ts';
import { type Pause, attributeTail, runQueueNs, type TailFigures, takePauses } from './tail.ts';
import { type WrkResult, runWrk } from './wrk.ts';

const LOAD_GEN = join(fileURLToPath(new URL('.', import.meta.url)), 'load-gen-main.ts');

export type SetupName = 'direct' | 'haproxy' | 'skein' | 'haproxy-tls' | 'skein-mtls';

/** A process under test whose CPU and memory we read from /proc. */
export interface MeasuredProcess {
  readonly role: string;
  readonly pid: number;
  /** Preloaded with pause-recorder.ts: its GC pauses are set against the slow requests (tail.ts). */
  readonly recordsPauses?: boolean;
}

export interface Setup {
  readonly name: SetupName;
  readonly host: string;
  readonly port: number;
  readonly authority: string;
  /** The proxies of the pair (empty for direct). */
  readonly procs: readonly MeasuredProcess[];
  /** Counters read before and after the open-loop run (connection reuse, TLS handshakes). */
  readonly counters?: () => Promise<Record<string, number>>;
  /** Figures from the counters' increase over `requests` requests in `seconds`. */
  readonly derive?: (delta: Record<string, number>, requests: number, seconds: number) => Record<string, number>;
}

export interface ScenarioOptions {
  readonly rate: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly connections: number;
  readonly seqDurationMs: number;
  readonly wrkSeconds: number;
  readonly wrkConnections: number;
  /** CPUs the load generators run on. */
  readonly loadCpus: string | undefined;
  /** The open-loop generator busy-polls its clock (it needs its own core); default true. */
  readonly spin?: boolean;
  /** Trace the scheduler (perf) during the open-loop run and break the slowest requests' time down (sched-trace.ts). */
  readonly sched?: { readonly cpu: number; readonly appPid: number; readonly dir: string };
}

export interface ScenarioResult {
  readonly setup: SetupName;
  readonly open: LoadResult;
  readonly seq: LoadResult;
  readonly wrk: WrkResult;
  /** Per proxy role: CPU-seconds used per 1000 requests during the open-loop run (= vCPU at 1000 rps). */
  readonly cpuPer1000: Record<string, number>;
  /** Per proxy role: RSS bytes right after the open-loop run. */
  readonly rss: Record<string, number>;
  /** Setup-specific figures (Setup.derive), e.g. reused_share, handshakes_per_s. */
  readonly extra: Record<string, number>;
  /** With ScenarioOptions.sched: the other tasks that held the proxies' CPU during the slowest requests. */
  readonly schedOthers?: string;
}

export async function runLoadGen(
  args: Record<string, string | number>,
  cpus: string | undefined,
  timeoutMs: number,
): Promise<LoadResult> {
  const argv = [LOAD_GEN, ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const proc = new PinnedProcess('load generator', process.execPath, argv, { cpus });
  const out = await proc.result(timeoutMs);
  const line = out.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as LoadResult;
}

export async function openLoop(setup: Setup, o: ScenarioOptions, dumpPath?: string): Promise<LoadResult> {
  return await runLoadGen(
    {
      mode: 'open',
      host: setup.host,
      port: setup.port,
      authority: setup.authority,
      rate: o.rate,
      duration: o.durationMs,
      warmup: o.warmupMs,
      connections: o.connections,
      spin: o.spin === false ? 0 : 1,
      ...(dumpPath === undefined ? {} : { dump: dumpPath }),
    },
    o.loadCpus,
    o.durationMs + o.warmupMs + 30_000,
  );
}

export async function measureSetup(setup: Setup, o: ScenarioOptions): Promise<ScenarioResult> {
  const c0 = await setup.counters?.();
  const recording = setup.procs.filter((p) => p.recordsPauses === true);
  for (const p of recording) await takePauses(p.pid); // starts each record afresh
  const dumpPath = join(tmpdir(), `skein-bench-requests-${process.pid}-${setup.name}.f64`);
  const trace = o.sched === undefined ? undefined : await SchedTrace.start(join(o.sched.dir, `sched-${setup.name}.data`));
  const t0 = performance.now();
  const before = setup.procs.map((p) => cpuSeconds(p.pid));
  const waitedBefore = setup.procs.map((p) => runQueueNs(p.pid));
  const open = await openLoop(setup, o, dumpPath);
  const after = setup.procs.map((p) => cpuSeconds(p.pid));
  const waitedAfter = setup.procs.map((p) => runQueueNs(p.pid));
  const slices = await trace?.stop();
  const seconds = (performance.now() - t0) / 1000;
  const c1 = await setup.counters?.();
  // Every request sent, warm-up included, over the CPU used meanwhile (the generator's start-up adds idle time).
  const requests = ((o.durationMs + o.warmupMs) / 1000) * o.rate;
  const cpuPer1000: Record<string, number> = {};
  const rss: Record<string, number> = {};
  let extra: Record<string, number> = {};
  setup.procs.forEach((p, i) => {
    cpuPer1000[p.role] = (((after[i] as number) - (before[i] as number)) / requests) * 1000;
    rss[p.role] = memoryUsage(p.pid).rss;
    // How long the process's main thread was ready to run but waited for its CPU, per request.
    extra[`runq_wait_us_per_req_${p.role}`] = ((waitedAfter[i] as number) - (waitedBefore[i] as number)) / 1000 / requests;
  });
  if (c0 !== undefined && c1 !== undefined && setup.derive !== undefined) {
    const delta = Object.fromEntries(Object.keys(c1).map((k) => [k, (c1[k] ?? 0) - (c0[k] ?? 0)]));
    extra = { ...extra, ...setup.derive(delta, requests, seconds) };
  }
  const requestTimes = new Float64Array(readFileSync(dumpPath).buffer);
  rmSync(dumpPath, { force: true });
  if (recording.length > 0) {
    const pauses: Record<string, Pause[]> = {};
    for (const p of recording) pauses[p.role] = await takePauses(p.pid);
    extra = { ...extra, ...tailExtras(attributeTail(requestTimes, pauses)) };
  }
  let schedOthers: string | undefined;
  if (slices !== undefined && o.sched !== undefined) {
    const path = new Map<number, string>([[o.sched.appPid, 'app'], ...setup.procs.map((p) => [p.pid, p.role] as [number, string])]);
    const { slowest, all } = cpuBreakdown(requestTimes, slices, path, o.sched.cpu);
    extra = { ...extra, ...schedExtras('slowest1', slowest), ...schedExtras('all', all) };
    const list = (xs: CpuShare['others']) => xs.map((x) => `${x.name} ${x.us.toFixed(0)} µs`).join(', ') || 'none';
    schedOthers = `${list(slowest.others)}; the path's own non-main threads: ${list(slowest.pathThreads)}`;
  }
  const seq = await runLoadGen(
    { mode: 'sequential', host: setup.host, port: setup.port, authority: setup.authority, duration: o.seqDurationMs, warmup: 500 },
    o.loadCpus,
    o.seqDurationMs + 30_000,
  );
  const wrk = await runWrk({
    host: setup.host,
    port: setup.port,
    authority: setup.authority,
    connections: o.wrkConnections,
    durationSec: o.wrkSeconds,
    cpus: o.loadCpus,
  });
  return { setup: setup.name, open, seq, wrk, cpuPer1000, rss, extra, ...(schedOthers === undefined ? {} : { schedOthers }) };
}

/** The tail figures as report extras: GC per sidecar, and how much of the slowest 1% overlapped a pause. */
function tailExtras(t: TailFigures): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [role, g] of Object.entries(t.gc)) {
    out[`gc_per_s_${role}`] = g.perSecond;
    out[`gc_major_per_s_${role}`] = g.majorPerSecond;
    out[`gc_time_pct_${role}`] = g.timeShare * 100;
    out[`gc_max_ms_${role}`] = g.maxMs;
  }
  out.gc_overlap_pct_all = t.overlapAll * 100;
  out.gc_overlap_pct_slowest1 = t.overlapSlow * 100;
  out.p99_ms = t.p99;
  out.p99_ms_without_gc_overlap = t.p99NoPause;
  return out;
}

/** A scheduler breakdown as report extras, µs per request: the proxies' CPU running the path, others, idle. */
function schedExtras(which: string, c: CpuShare): Record<string, number> {
  return {
    [`sched_${which}_latency_us`]: c.latencyMs * 1000,
    [`sched_${which}_cpu_path_us`]: c.pathUs,
    [`sched_${which}_cpu_path_threads_us`]: c.pathThreadsUs,
    [`sched_${which}_cpu_other_us`]: c.otherUs,
    [`sched_${which}_cpu_idle_us`]: c.idleUs,
    [`sched_${which}_path_wait_us`]: c.pathWaitUs,
    ...Object.fromEntries(
      Object.entries(c.byRole).flatMap(([role, r]) => [
        [`sched_${which}_cpu_${role}_us`, r.us],
        [`sched_${which}_longest_run_${role}_us`, r.longestRunUs],
      ]),
    ),
  };
}
