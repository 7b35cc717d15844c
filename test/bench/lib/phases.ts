// One benchmark run: a fresh control plane, N simulated proxies, then the single-change and churn phases.
import { appendFileSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ClientKind, XdsMode } from './ads-client.ts';
import { formatProfile, summarizeProfile } from './cpu-profile.ts';
import { monotonicMs } from './change-tracker.ts';
import { ControlPlaneProcess } from './control-plane-process.ts';
import { cpuSeconds, memoryUsage, RssSampler } from './proc-stats.ts';
import { type Histogram, histogramDelta, histogramQuantile, readHistogram } from './prom-text.ts';
import { type GeneratedRegistry, namespaceName } from './registry-gen.ts';
import { type Summary, summarize } from './stats.ts';
import { WorkerPool } from './worker-pool.ts';

export interface RunSettings {
  readonly proxies: number;
  readonly mode: XdsMode;
  /** How the simulated proxies speak gRPC. */
  readonly client: ClientKind;
  /** Delta proxies ask for VHDS as Skein's sidecar does (default true; --no-vhds: RDS only, as before). */
  readonly vhds?: boolean;
  readonly registry: GeneratedRegistry;
  readonly debounceMs: number;
  readonly workers: number;
  /** CPU lists for `taskset`, or undefined for no pinning. */
  readonly pin: { controlPlane: string; load: string } | undefined;
  readonly repetitions: number;
  readonly churnSeconds: number;
  /** Services changed per churn tick (1% of the mesh). */
  readonly churnPerTick: number;
  readonly syncTimeoutMs: number;
  readonly changeTimeoutMs: number;
  readonly log: (line: string) => void;
}

export interface PhaseResult {
  /** Number of changes (single: repetitions; churn: ticks). */
  readonly changes: number;
  /** File rename → each proxy's ACK of the EDS update holding the change, ms; one sample per (change, proxy). */
  readonly ack: Summary;
  /** Per change, p99 over proxies (ms). */
  readonly p99PerChange: number[];
  /** File rename → the first proxy receiving the change (the first response leaving the server, plus loopback), ms. */
  readonly firstResponse: Summary;
  /** (change, proxy) pairs that never saw the change before the timeout. */
  readonly missed: number;
  /** Response bytes all proxies received in the phase, per change per proxy. */
  readonly bytesPerChangePerProxy: number;
  readonly edsBytesPerChangePerProxy: number;
  /** Request bytes all proxies sent in the phase (ACKs; SotW's repeat every subscribed name), per change per proxy. */
  readonly requestBytesPerChangePerProxy: number;
  /** Average size of one EDS response a proxy received in the phase (SotW: the whole set; delta: what changed). */
  readonly edsBytesPerResponse: number;
  /** Resource bytes the server says it sent (skein_xds_bytes_sent_total), per change per proxy. */
  readonly serverBytesPerChangePerProxy: number;
  readonly controlPlaneCpuSeconds: number;
  /** Control plane's own skein_xds_push_convergence_seconds in the phase (registry change → ACK), ms. */
  readonly serverConvergence: { count: number; p50: number; p99: number; mean: number } | undefined;
}

export interface RunResult {
  readonly proxies: number;
  readonly mode: XdsMode;
  readonly synced: number;
  readonly syncSeconds: number;
  readonly syncCpuSeconds: number;
  /** The first endpoint change after the initial sync, alone (cold code paths on both sides). */
  readonly cold?: PhaseResult | undefined;
  readonly single: PhaseResult | undefined;
  readonly churn: PhaseResult | undefined;
  /** A Service added then removed, `repetitions` times: a change that touches CDS (SotW resends every cluster). */
  readonly serviceChurn?: PhaseResult | undefined;
  readonly rssBytes: number;
  readonly peakRssBytes: number;
  readonly sampledMaxRssBytes: number;
  readonly loadErrors: number;
  /** The control plane's own view at the end (/debug/proxy-status): streams, EDS SYNCED, any type NACKED. */
  readonly serverView?: { streams: number; edsSynced: number; nacked: number };
  readonly error?: string;
}

const CONVERGENCE = 'skein_xds_push_convergence_seconds';

interface PhaseStart {
  /** Control-plane CPU seconds after the metrics scrape (where a phase starts counting). */
  readonly cpu: number;
  /** ... and before it (where the previous phase stops counting: a scrape is no part of a change's cost). */
  readonly cpuBeforeScrape: number;
  readonly bytes: number;
  readonly edsBytes: number;
  readonly edsResponses: number;
  readonly requestBytes: number;
  readonly serverBytes: number;
  readonly histogram: Histogram | undefined;
}

/**
 * SKEIN_BENCH_CP_PROFILE=<dir>: the control plane runs with --cpu-prof into <dir>, and after the run its profile is
 * summarized per phase (sync, single change, churn) on stderr. Off by default (profiling slows the control plane).
 */
const PROFILE_DIR = process.env.SKEIN_BENCH_CP_PROFILE;
/** SKEIN_BENCH_CP_LOG=<file>: the control plane's stderr (JSON log lines; SKEIN_DEBUG=... adds traces) goes there too. */
const LOG_FILE = process.env.SKEIN_BENCH_CP_LOG;

/**
 * SKEIN_BENCH_CP_NODE_FLAGS="<flags>": node flags for the control plane (space-separated, e.g. "--trace-gc
 * --trace-gc-verbose"); SKEIN_BENCH_CP_STDOUT=<file>: its stdout, where those traces go, is appended there.
 */
const CP_NODE_FLAGS = (process.env.SKEIN_BENCH_CP_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const STDOUT_FILE = process.env.SKEIN_BENCH_CP_STDOUT;

function profileEnv(): NodeJS.ProcessEnv | undefined {
  if (!PROFILE_DIR) return undefined;
  mkdirSync(PROFILE_DIR, { recursive: true });
  return { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${PROFILE_DIR}`.trim() };
}

/** Prints the newest profile of PROFILE_DIR per phase window (monotonic ms; V8 profiles use the same clock in µs). */
function reportProfile(s: RunSettings, windows: [string, number, number][]): void {
  if (!PROFILE_DIR) return;
  const files = readdirSync(PROFILE_DIR)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(PROFILE_DIR, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  const file = files[0];
  if (!file) return;
  for (const [name, from, to] of windows) {
    s.log(formatProfile(`[${s.mode} × ${s.proxies}] control plane, ${name} (${file})`, summarizeProfile(file, 30, { fromUs: from * 1000, toUs: to * 1000 })));
  }
}

export async function runOnce(s: RunSettings): Promise<RunResult> {
  s.log(`[${s.mode} × ${s.proxies}] starting the control plane on ${s.registry.path}`);
  const windows: [string, number, number][] = [];
  try {
    return await runMeasured(s, windows);
  } finally {
    reportProfile(s, windows);
  }
}

async function runMeasured(s: RunSettings, windows: [string, number, number][]): Promise<RunResult> {
  const cp = await ControlPlaneProcess.start({
    registry: s.registry.path,
    debounceMs: s.debounceMs,
    cpus: s.pin?.controlPlane,
    readyTimeoutMs: 180_000,
    env: profileEnv(),
    onStderr: LOG_FILE ? (chunk) => appendFileSync(LOG_FILE, chunk) : undefined,
    onStdout: STDOUT_FILE ? (chunk) => appendFileSync(STDOUT_FILE, chunk) : undefined,
    nodeFlags: CP_NODE_FLAGS,
  });
  const sampler = new RssSampler(cp.pid);
  const pool = new WorkerPool({ workers: s.workers, cpus: s.pin?.load, onError: (m) => s.log(`  ${m}`) });
  try {
    const specs = Array.from({ length: s.proxies }, (_, index) => ({
      index,
      namespace: namespaceName(index % s.registry.shape.namespaces),
    }));
    const cpu0 = cpuSeconds(cp.pid);
    const t0 = monotonicMs();
    let lastLog = 0;
    const synced = await pool.start(cp.xdsAddress, s.mode, s.client, specs, s.syncTimeoutMs, (n) => {
      if (monotonicMs() - lastLog > 2000 || n === s.proxies) {
        lastLog = monotonicMs();
        s.log(`  synced ${n}/${s.proxies} proxies`);
      }
    }, s.vhds !== false);
    const syncSeconds = (monotonicMs() - t0) / 1000;
    windows.push(['initial sync', t0, monotonicMs()]);
    const syncCpuSeconds = cpuSeconds(cp.pid) - cpu0;
    const base = {
      proxies: s.proxies,
      mode: s.mode,
      synced,
      syncSeconds,
      syncCpuSeconds,
    };
    if (synced < s.proxies) {
      const mem = memoryUsage(cp.pid);
      return {
        ...base,
        single: undefined,
        churn: undefined,
        rssBytes: mem.rss,
        peakRssBytes: mem.peakRss,
        sampledMaxRssBytes: sampler.stop(),
        loadErrors: pool.errors,
        error: `only ${synced} of ${s.proxies} proxies synced within ${s.syncTimeoutMs / 1000} s`,
      };
    }
    await sleep(500);
    // The first change after the mass sync runs code paths (the registry edit, the small-update flush, the proxies'
    // change handling) that no change has warmed yet, in both processes. It is measured and reported on its own,
    // like bench:proxy's warm-up, so the repetitions measure the steady state the target is about.
    s.log('  first endpoint change after the sync (cold)');
    const coldFrom = monotonicMs();
    const cold = await measurePhase(s, cp, pool, async (ids, writes) => {
      ids.push(1);
      writes.push(await change(s, pool, 1, 1));
      await pool.waitComplete([1], s.changeTimeoutMs);
      await sleep(300);
    });
    windows.push(['first endpoint change (cold)', coldFrom, monotonicMs()]);
    s.log(`  single endpoint change × ${s.repetitions}`);
    const singleFrom = monotonicMs();
    const single = await measurePhase(s, cp, pool, async (ids, writes) => {
      const started = monotonicMs();
      for (let r = 0; r < s.repetitions; r++) {
        if (r > 0 && monotonicMs() - started > 2 * s.changeTimeoutMs) {
          s.log(`  stopping after ${r} repetitions: the time budget of this phase is spent`);
          break;
        }
        const id = ids.length + 2;
        ids.push(id);
        writes.push(await change(s, pool, id, 1));
        await pool.waitComplete([id], s.changeTimeoutMs);
        await sleep(300);
      }
    });
    windows.push(['single endpoint change', singleFrom, monotonicMs()]);
    s.log(`  churn: ${s.churnPerTick} Services every second for ${s.churnSeconds} s`);
    const churnFrom = monotonicMs();
    const churn = await measurePhase(s, cp, pool, async (ids, writes) => {
      const start = monotonicMs();
      for (let tick = 0; tick < s.churnSeconds; tick++) {
        const wait = start + tick * 1000 - monotonicMs();
        if (wait > 0) await sleep(wait);
        const id = 1000 + tick;
        ids.push(id);
        writes.push(await change(s, pool, id, s.churnPerTick));
      }
      await pool.waitComplete(ids, s.changeTimeoutMs);
    });
    windows.push(['churn', churnFrom, monotonicMs()]);
    s.log(`  Service added and removed × ${s.repetitions}`);
    const serviceFrom = monotonicMs();
    const serviceChurn = await measurePhase(s, cp, pool, async (ids, writes) => {
      for (let r = 0; r < s.repetitions; r++) {
        // Added: proxies see the new cluster in CDS, subscribe to its endpoints and ACK them (timed).
        const id = 2000 + r;
        ids.push(id);
        const added = s.registry.addService();
        await pool.expect(id, [{ cluster: added.cluster, ip: added.ip }]);
        s.registry.write();
        writes.push(monotonicMs());
        await pool.waitComplete([id], s.changeTimeoutMs);
        await sleep(300);
        // Removed: not timed (nothing arrives to look for); its bytes and CPU count in the phase.
        s.registry.removeAddedService();
        s.registry.write();
        await sleep(1000);
      }
    }, 2);
    windows.push(['Service add/remove', serviceFrom, monotonicMs()]);
    const serverView = await proxyStatusView(cp).catch(() => undefined);
    const mem = memoryUsage(cp.pid);
    return {
      ...base,
      cold,
      single,
      churn,
      serviceChurn,
      serverView,
      rssBytes: mem.rss,
      peakRssBytes: mem.peakRss,
      sampledMaxRssBytes: sampler.stop(),
      loadErrors: pool.errors,
    };
  } finally {
    sampler.stop();
    await pool.stop();
    await cp.stop();
  }
}

/** Arms the proxies for `count` new endpoint IPs, rewrites the file, and returns the time of the rename. */
async function change(s: RunSettings, pool: WorkerPool, id: number, count: number): Promise<number> {
  const changes = s.registry.changeEndpoints(count);
  await pool.expect(
    id,
    changes.map((c) => ({ cluster: c.cluster, ip: c.ip })),
  );
  s.registry.write();
  return monotonicMs();
}

async function phaseStart(cp: ControlPlaneProcess, pool: WorkerPool): Promise<PhaseStart> {
  const counters = await pool.counters();
  const cpuBeforeScrape = cpuSeconds(cp.pid);
  // A scrape that fails (the control plane too busy to answer in 10 s) gives NaN, not a bogus delta. It costs the
  // control plane ~25 ms at 1000 proxies (prom-client's default metrics list every handle and open file), which is
  // left out of the phase's CPU.
  const metrics = await cp.metrics().catch(() => undefined);
  return {
    cpu: cpuSeconds(cp.pid),
    cpuBeforeScrape,
    bytes: counters.bytes,
    edsBytes: counters.edsBytes,
    edsResponses: counters.edsResponses,
    requestBytes: counters.requestBytes,
    serverBytes: metrics === undefined ? Number.NaN : counterSum(metrics, 'skein_xds_bytes_sent_total'),
    histogram: metrics === undefined ? undefined : readHistogram(metrics, CONVERGENCE),
  };
}

/** `changesPerId`: registry changes each timed id stands for (an added Service is later removed: 2). */
async function measurePhase(
  s: RunSettings,
  cp: ControlPlaneProcess,
  pool: WorkerPool,
  body: (ids: number[], writes: number[]) => Promise<void>,
  changesPerId = 1,
): Promise<PhaseResult> {
  const before = await phaseStart(cp, pool);
  const ids: number[] = [];
  const writes: number[] = [];
  await body(ids, writes);
  await sleep(200); // late ACKs of the last responses
  const after = await phaseStart(cp, pool);
  const acks: number[] = [];
  const firsts: number[] = [];
  const p99PerChange: number[] = [];
  let missed = 0;
  for (let i = 0; i < ids.length; i++) {
    const r = await pool.collect(ids[i] as number);
    const t = writes[i] as number;
    const lat = r.ackedAt.map((a) => a - t);
    missed += lat.filter((v) => !Number.isFinite(v)).length;
    acks.push(...lat);
    p99PerChange.push(summarize(lat).p99);
    const received = r.receivedAt.filter((v) => Number.isFinite(v));
    if (received.length) firsts.push(Math.min(...received) - t);
  }
  const per = Math.max(1, ids.length * changesPerId) * s.proxies;
  const conv = after.histogram ? histogramDelta(before.histogram, after.histogram) : undefined;
  return {
    changes: ids.length * changesPerId,
    ack: summarize(acks),
    p99PerChange,
    firstResponse: summarize(firsts),
    missed,
    bytesPerChangePerProxy: (after.bytes - before.bytes) / per,
    edsBytesPerChangePerProxy: (after.edsBytes - before.edsBytes) / per,
    requestBytesPerChangePerProxy: (after.requestBytes - before.requestBytes) / per,
    edsBytesPerResponse: (after.edsBytes - before.edsBytes) / Math.max(1, after.edsResponses - before.edsResponses),
    serverBytesPerChangePerProxy: (after.serverBytes - before.serverBytes) / per,
    controlPlaneCpuSeconds: after.cpuBeforeScrape - before.cpu,
    serverConvergence:
      conv && conv.count > 0
        ? {
            count: conv.count,
            p50: histogramQuantile(conv, 0.5) * 1000,
            p99: histogramQuantile(conv, 0.99) * 1000,
            mean: (conv.sum / conv.count) * 1000,
          }
        : undefined,
  };
}

interface ProxyStatusJson {
  proxies: { userAgent?: string; types: { type: string; state: string }[] }[];
}

async function proxyStatusView(cp: ControlPlaneProcess): Promise<RunResult['serverView']> {
  const body = JSON.parse(await cp.get('/debug/proxy-status')) as ProxyStatusJson;
  const ours = body.proxies.filter((p) => (p.userAgent ?? 'skein-bench').startsWith('skein-bench'));
  return {
    streams: ours.length,
    edsSynced: ours.filter((p) => p.types.some((t) => t.type === 'EDS' && t.state === 'SYNCED')).length,
    nacked: ours.filter((p) => p.types.some((t) => t.state === 'NACKED')).length,
  };
}

function counterSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
