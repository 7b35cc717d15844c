// One proxy-benchmark measurement of one setup (direct, haproxy pair, skein pair): open loop, concurrency 1, wrk.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult } from './open-loop.ts';
import { PinnedProcess } from './pinned-process.ts';
import { cpuSeconds, memoryUsage } from './proc-stats.ts';
import { type WrkResult, runWrk } from './wrk.ts';

const LOAD_GEN = join(fileURLToPath(new URL('.', import.meta.url)), 'load-gen-main.ts');

export type SetupName = 'direct' | 'haproxy' | 'skein' | 'haproxy-tls' | 'skein-mtls';

/** A process under test whose CPU and memory we read from /proc. */
export interface MeasuredProcess {
  readonly role: string;
  readonly pid: number;
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

export async function openLoop(setup: Setup, o: ScenarioOptions): Promise<LoadResult> {
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
    },
    o.loadCpus,
    o.durationMs + o.warmupMs + 30_000,
  );
}

export async function measureSetup(setup: Setup, o: ScenarioOptions): Promise<ScenarioResult> {
  const c0 = await setup.counters?.();
  const t0 = performance.now();
  const before = setup.procs.map((p) => cpuSeconds(p.pid));
  const open = await openLoop(setup, o);
  const after = setup.procs.map((p) => cpuSeconds(p.pid));
  const seconds = (performance.now() - t0) / 1000;
  const c1 = await setup.counters?.();
  // Every request sent, warm-up included, over the CPU used meanwhile (the generator's start-up adds idle time).
  const requests = ((o.durationMs + o.warmupMs) / 1000) * o.rate;
  const cpuPer1000: Record<string, number> = {};
  const rss: Record<string, number> = {};
  setup.procs.forEach((p, i) => {
    cpuPer1000[p.role] = (((after[i] as number) - (before[i] as number)) / requests) * 1000;
    rss[p.role] = memoryUsage(p.pid).rss;
  });
  let extra: Record<string, number> = {};
  if (c0 !== undefined && c1 !== undefined && setup.derive !== undefined) {
    const delta = Object.fromEntries(Object.keys(c1).map((k) => [k, (c1[k] ?? 0) - (c0[k] ?? 0)]));
    extra = setup.derive(delta, requests, seconds);
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
  return { setup: setup.name, open, seq, wrk, cpuPer1000, rss, extra };
}
