// Data-plane benchmark (issue 3): direct vs our sidecar pair vs a haproxy pair, open-loop latency, throughput, CPU, RSS.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatProfile, summarizeProfile } from './lib/cpu-profile.ts';
import { Haproxy, haproxyAvailable, serverConfig } from './lib/haproxy.ts';
import { getOnce } from './lib/http1-conn.ts';
import { type IdleRssResult, measureIdleRss } from './lib/idle-rss.ts';
import { freePort } from './lib/pinned-process.ts';
import { cpuSeconds, memoryUsage } from './lib/proc-stats.ts';
import { aggregate, checkTargets, renderTable, toJson } from './lib/proxy-report.ts';
import { type ScenarioOptions, type ScenarioResult, type Setup, type SetupName, measureSetup, openLoop } from './lib/proxy-scenario.ts';
import { AUTHORITY, CLIENT_IP, type Running, SERVER_IP, startSetups } from './lib/proxy-setups.ts';
import { schedTraceAvailable } from './lib/sched-trace.ts';
import { type SidecarPair, sidecarHasMtls, skeinAvailable, startSidecarPair } from './lib/sidecar-pair.ts';
import { wrkAvailable } from './lib/wrk.ts';

const USAGE = `Usage: npm run bench:proxy -- [--runs 3] [--rate 1000] [--duration 10] [--warmup 2] [--connections 32]
       [--seq-duration 3] [--wrk-duration 5] [--wrk-connections 64] [--setups direct,haproxy,skein,haproxy-tls,skein-mtls]
       [--mtls auto|on|off] [--idle-services 1000] [--no-idle] [--no-pin] [--quick] [--profile] [--sched]

Runs, in one process tree on loopback: the app (haproxy answering 200 with 1 KiB), direct (client → app), a haproxy
pair (outbound routes by Host, PROXY v2 + keep-alive to the inbound one) and our sidecar pair (skein control-plane
on a registry file, client sidecar on 127.0.0.2, server sidecar on 127.0.0.3). Load generators on CPU 1, everything
under test on CPU 0 (taskset). Per run and setup: open-loop load at --rate for --duration s (latency from the
scheduled time), one request at a time for --seq-duration s, then wrk (closed loop) for the maximum rate.
With mTLS (--mtls auto: when \`skein sidecar\` has --mtls), also our pair with mutual TLS (certificates from the
control plane's CA) and the haproxy pair with TLS between the haproxies (a test CA made with openssl).
Then one sidecar's idle RSS holding --idle-services generated Services. Prints a table, then one JSON line.
--profile: instead, runs our pair under the open-loop load with node --cpu-prof and prints where the time goes.
Every run sets the slowest 1% of requests against the sidecars' GC pauses and reports each proxy's run-queue wait.
--sched: also traces the scheduler (perf sched, root; Debian's linux-perf) during the open-loop runs and breaks the
slowest requests' time down: the proxies' CPU running the request path, running other tasks, or idle.`;

const LOAD_CPUS = '1';
const SUT_CPUS = '0';
const IDLE_IP = '127.0.0.4';
const BUDGET_MS = 9.5 * 60_000;

function parseFlags(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      runs: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      duration: { type: 'string' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '32' },
      'seq-duration': { type: 'string' },
      'wrk-duration': { type: 'string' },
      'wrk-connections': { type: 'string', default: '64' },
      setups: { type: 'string' },
      mtls: { type: 'string', default: 'auto' },
      'idle-services': { type: 'string', default: '1000' },
      'no-idle': { type: 'boolean', default: false },
      'no-pin': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      sched: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const num = (flag: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${flag}: "${v}" must be a number ≥ ${min}`);
    return n;
  };
  const q = values.quick;
  if (!['auto', 'on', 'off'].includes(values.mtls)) throw new Error(`--mtls: "${values.mtls}" is not auto, on or off`);
  const withMtls = values.mtls === 'on' || (values.mtls === 'auto' && skeinAvailable() && sidecarHasMtls());
  const defaults = `direct,haproxy,skein${withMtls ? ',haproxy-tls,skein-mtls' : ''}`;
  const setups = (values.setups ?? defaults).split(',').map((s) => s.trim()) as SetupName[];
  const known: readonly string[] = ['direct', 'haproxy', 'skein', 'haproxy-tls', 'skein-mtls'];
  for (const s of setups) {
    if (!known.includes(s)) throw new Error(`--setups: "${s}" is not one of ${known.join(', ')}`);
  }
  if (!setups.includes('direct')) setups.unshift('direct');
  return {
    runs: Math.round(num('runs', values.runs ?? (q ? '1' : '3'), 1)),
    rate: num('rate', values.rate, 1),
    durationMs: num('duration', values.duration ?? (q ? '4' : '10'), 1) * 1000,
    warmupMs: num('warmup', values.warmup, 0) * 1000,
    connections: Math.round(num('connections', values.connections, 1)),
    seqDurationMs: num('seq-duration', values['seq-duration'] ?? (q ? '2' : '3'), 1) * 1000,
    wrkSeconds: Math.round(num('wrk-duration', values['wrk-duration'] ?? (q ? '3' : '5'), 1)),
    wrkConnections: Math.round(num('wrk-connections', values['wrk-connections'], 1)),
    setups,
    idleServices: values['no-idle'] ? 0 : Math.round(num('idle-services', values['idle-services'], 1)),
    pin: !values['no-pin'] && availableParallelism() >= 2,
    profile: values.profile,
    sched: values.sched,
  };
}

type Flags = ReturnType<typeof parseFlags>;

function ensureTools(): void {
  if (haproxyAvailable() && wrkAvailable()) return;
  process.stderr.write('bench: haproxy or wrk missing; running .ci/system-packages.sh\n');
  try {
    execFileSync('bash', ['.ci/system-packages.sh'], { stdio: 'inherit' });
  } catch {
    // reported below
  }
  if (!haproxyAvailable() || !wrkAvailable()) throw new Error('haproxy and wrk are needed (Debian packages haproxy, wrk)');
}

function commandLine(): string {
  return `npm run bench:proxy -- ${process.argv.slice(2).join(' ')}`.trim();
}

/**
 * Profiles one sidecar at a time, alone on CPU 0 (everything else, the load generator included, on CPU 1), so its
 * samples are its own work and not time it spent preempted by its peers on a shared core.
 */
async function profileRun(dir: string, flags: Flags, opts: ScenarioOptions, log: (s: string) => void): Promise<number> {
  const summaries: Record<string, unknown> = {};
  for (const role of ['client', 'server'] as const) {
    const roleDir = join(dir, `profile-${role}`);
    const profDir = join(roleDir, 'profiles');
    mkdirSync(profDir, { recursive: true });
    const appPort = await freePort(SERVER_IP);
    const app = await Haproxy.start(roleDir, 'app', serverConfig(SERVER_IP, appPort, join(roleDir, 'app.sock')), SERVER_IP, appPort, LOAD_CPUS);
    let pair: SidecarPair | undefined;
    try {
      pair = await startSidecarPair({
        dir: roleDir,
        appIp: SERVER_IP,
        appPort,
        clientIp: CLIENT_IP,
        cpus: LOAD_CPUS,
        sidecarCpus: { [role]: SUT_CPUS },
        nodeFlags: { [role]: ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${role}.cpuprofile`] },
      });
      const setup: Setup = { name: 'skein', host: pair.entry.host, port: pair.entry.port, authority: AUTHORITY, procs: [] };
      const pid = pair[role].proc.pid;
      log(`profiling the ${role} sidecar alone on CPU ${SUT_CPUS}: ${flags.rate} rps for ${(opts.durationMs + opts.warmupMs) / 1000} s`);
      const cpu0 = cpuSeconds(pid);
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      // The generator shares CPU 1 with the app and the other sidecar: no busy-polling there.
      const res = await openLoop(setup, { ...opts, spin: false });
      const toUs = Number(process.hrtime.bigint() / 1000n);
      const cpuPer1000 = ((cpuSeconds(pid) - cpu0) / (((opts.durationMs + opts.warmupMs) / 1000) * opts.rate)) * 1000;
      log(`  p50 ${(res.latency.p50 * 1000).toFixed(0)} µs, p99 ${(res.latency.p99 * 1000).toFixed(0)} µs, ${cpuPer1000.toFixed(3)} CPU-s per 1000 requests (profiler on)`);
      await pair.stop();
      pair = undefined;
      // The load window only, without the generator's warm-up: steady state, no start-up.
      const s = summarizeProfile(join(profDir, `${role}.cpuprofile`), 25, { fromUs: fromUs + opts.warmupMs * 1000 + 500_000, toUs });
      process.stdout.write(`\n${formatProfile(`${role} sidecar`, s)}\n`);
      summaries[role] = { cpu_per_1000: cpuPer1000, busy_s: s.busyUs / 1e6, areas: s.areas, top: s.top };
    } finally {
      await pair?.stop();
      await app.stop();
    }
  }
  process.stdout.write(`${JSON.stringify({ bench: 'proxy-profile', command: commandLine(), rate: flags.rate, profiles: summaries })}\n`);
  return 0;
}

async function main(): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (!skeinAvailable()) {
    process.stderr.write('bench: cli/skein.ts, sidecar/main.ts or control-plane/main.ts is missing\n');
    return 2;
  }
  ensureTools();
  const started = Date.now();
  const log = (line: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);
  const watchdog = setTimeout(() => {
    log(`over the ${BUDGET_MS / 60_000} min budget: stopping`);
    process.exit(1);
  }, BUDGET_MS);
  watchdog.unref();
  const cpus = flags.pin ? SUT_CPUS : undefined;
  const loadCpus = flags.pin ? LOAD_CPUS : undefined;
  if (flags.pin) execFileSync('taskset', ['-pc', LOAD_CPUS, String(process.pid)], { stdio: 'ignore' });
  const dir = mkdtempSync(join(tmpdir(), 'skein-bench-proxy-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const opts: ScenarioOptions = {
    rate: flags.rate,
    durationMs: flags.durationMs,
    warmupMs: flags.warmupMs,
    connections: flags.connections,
    seqDurationMs: flags.seqDurationMs,
    wrkSeconds: flags.wrkSeconds,
    wrkConnections: flags.wrkConnections,
    loadCpus,
  };
  if (flags.profile) return await profileRun(dir, flags, opts, log);

  let running: Running | undefined;
  const runs: Partial<Record<SetupName, ScenarioResult>>[] = [];
  let idle: IdleRssResult | undefined;
  let idleRssOneCluster: number | undefined;
  try {
    running = await startSetups(dir, flags.setups, cpus, log);
    const setups = running.setups;
    for (const s of setups) {
      const status = await getOnce(s.host, s.port, AUTHORITY);
      if (status !== 200) throw new Error(`${s.name}: a probe request through ${s.host}:${s.port} answered ${status}, not 200`);
    }
    let runOpts = opts;
    if (flags.sched) {
      if (!flags.pin) log('--sched: needs the proxies pinned to one CPU (not with --no-pin or one CPU): no scheduler trace');
      else if (!schedTraceAvailable()) log('--sched: perf cannot trace the scheduler here (install linux-perf; run as root): no scheduler trace');
      else runOpts = { ...opts, sched: { cpu: Number(SUT_CPUS), appPid: running.appPid, dir } };
    }
    const ours = setups.find((s) => s.name === 'skein');
    if (ours?.procs[0] !== undefined) idleRssOneCluster = memoryUsage(ours.procs[0].pid).rss;
    for (let run = 0; run < flags.runs; run++) {
      const results: Partial<Record<SetupName, ScenarioResult>> = {};
      // Rotate the order so no setup always runs first (warm caches, background load).
      const order = setups.map((_, i) => setups[(i + run) % setups.length] as Setup);
      for (const s of order) {
        log(`run ${run + 1}/${flags.runs}: ${s.name}`);
        const r = await measureSetup(s, runOpts);
        results[s.name] = r;
        log(
          `  ${s.name}: p50 ${(r.open.latency.p50 * 1000).toFixed(0)} µs, p99 ${(r.open.latency.p99 * 1000).toFixed(0)} µs, ` +
            `c1 p50 ${(r.seq.latency.p50 * 1000).toFixed(0)} µs, wrk ${r.wrk.requestsPerSec.toFixed(0)} req/s, ` +
            `errors ${r.open.errors + r.open.non2xx}`,
        );
        if (r.schedOthers !== undefined) log(`  ${s.name}: other tasks on CPU ${SUT_CPUS} during the slowest 1%: ${r.schedOthers}`);
      }
      runs.push(results);
    }
  } finally {
    await running?.stop();
  }
  if (flags.idleServices > 0 && flags.setups.includes('skein')) {
    log(`idle RSS: one sidecar, ${flags.idleServices} generated Services`);
    idle = await measureIdleRss({ dir, services: flags.idleServices, endpointsPerService: 3, ip: IDLE_IP, cpus, settleMs: 20_000, log });
  }
  const aggs = aggregate(runs);
  const checks = checkTargets(aggs, idle);
  if (aggs.some((a) => a.setup === 'skein-mtls')) checks.push(...checkTargets(aggs, undefined, 'skein-mtls', 'haproxy-tls'));
  const seconds = (Date.now() - started) / 1000;
  process.stdout.write(
    `\nProxy benchmark: ${flags.runs} run(s), ${flags.rate} rps open loop for ${flags.durationMs / 1000} s ` +
      `(${flags.connections} keep-alive connections), 1 KiB responses, ` +
      `${flags.pin ? `load on CPU ${LOAD_CPUS}, proxies and app on CPU ${SUT_CPUS}` : 'no CPU pinning'}, ${seconds.toFixed(0)} s\n` +
      `command: ${commandLine()}\n\n`,
  );
  process.stdout.write(`${renderTable(aggs, checks, flags.rate)}\n`);
  if (idle !== undefined) {
    const one = idleRssOneCluster ?? Number.NaN;
    process.stdout.write(
      `idle sidecar: ${(idle.rssBytes / 2 ** 20).toFixed(1)} MiB with ${idle.clusters} clusters ` +
        `(${(one / 2 ** 20).toFixed(1)} MiB with 1 before load; ≈ ${((idle.rssBytes - one) / 1024 / Math.max(1, idle.clusters - 1)).toFixed(1)} KiB per cluster)\n`,
    );
  }
  const meta = {
    command: commandLine(),
    runs: flags.runs,
    rate: flags.rate,
    duration_s: flags.durationMs / 1000,
    connections: flags.connections,
    wrk_connections: flags.wrkConnections,
    pinned: flags.pin,
    node: process.version,
    seconds: Math.round(seconds),
    idle_rss_one_cluster_bytes: idleRssOneCluster ?? null,
  };
  process.stdout.write(`${toJson(meta, aggs, checks, idle)}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
