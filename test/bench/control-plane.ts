// Control-plane benchmark: N simulated sidecars on ADS (SotW and delta, delta with VHDS unless --no-vhds), changes from a registry file.
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ClientKind, XdsMode } from './lib/ads-client.ts';
import { controlPlaneAvailable, SKEIN_CLI } from './lib/control-plane-process.ts';
import { type RunResult, runOnce } from './lib/phases.ts';
import { GeneratedRegistry } from './lib/registry-gen.ts';
import { checkTargets, renderTable, toJson } from './lib/report.ts';

const USAGE = `Usage: npm run bench:control-plane -- [--proxies 100,1000] [--modes sotw,delta] [--quick]
       [--services 1000] [--endpoints 10] [--namespaces 10] [--debounce-ms 100] [--repetitions 3]
       [--churn-seconds 10] [--timeout-s 20] [--workers 2] [--client h2|grpc-js] [--no-pin] [--no-vhds]

Starts \`skein control-plane --registry <generated file>\` once per (proxies, mode), connects the simulated
proxies over ADS, and measures one endpoint change and 1% churn per second. --quick: 100 proxies (unless
--proxies is given) and 3 s of churn. --no-pin: do not pin the control plane and the load
generator to different cores with taskset. --client: how the simulated proxies speak gRPC: h2 (default), a bare
HTTP/2 stream per proxy (test/bench/lib/h2-call.ts), or grpc-js's client (more load-generator CPU per response;
with 1000 proxies on one core its own queue then shows in the tail). --timeout-s: how long after a change (after the last churn tick)
proxies may take to ACK it before they count as missed. Delta proxies declare VHDS (node.client_features
skein.vhds) and subscribe to every VirtualHost, as Skein's sidecar does; --no-vhds (or SKEIN_BENCH_VHDS=0): they
do not, and get the whole route table over RDS (for an A/B of the two).
Environment: SKEIN_BENCH_CP_PROFILE=<dir> profiles the control plane and prints its hottest functions per phase;
SKEIN_BENCH_CP_LOG=<file> keeps its log; SKEIN_BENCH_CP_NODE_FLAGS="--trace-gc ..." runs it with those node flags and
SKEIN_BENCH_CP_STDOUT=<file> keeps its stdout (where --trace-gc writes); SKEIN_BENCH_WORKER_FLAGS="--cpu-prof --cpu-prof-dir=<dir>" passes node flags
to the load-generator processes (to see whether they, not the control plane, bound a phase).`;

function parseList(value: string, flag: string): string[] {
  const list = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new Error(`${flag}: empty list`);
  return list;
}

function parseFlags(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      proxies: { type: 'string' },
      modes: { type: 'string', default: 'sotw,delta' },
      quick: { type: 'boolean', default: false },
      services: { type: 'string', default: '1000' },
      endpoints: { type: 'string', default: '10' },
      namespaces: { type: 'string', default: '10' },
      'debounce-ms': { type: 'string', default: '100' },
      repetitions: { type: 'string' },
      'churn-seconds': { type: 'string' },
      workers: { type: 'string', default: '2' },
      client: { type: 'string', default: 'h2' },
      'timeout-s': { type: 'string', default: '20' },
      'no-pin': { type: 'boolean', default: false },
      'no-vhds': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const int = (flag: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${flag}: "${v}" must be a whole number ≥ ${min}`);
    return n;
  };
  const proxies = parseList(values.proxies ?? (values.quick ? '100' : '100,1000'), '--proxies').map((v) =>
    int('proxies', v, 1),
  );
  const modes = parseList(values.modes, '--modes').map((m) => {
    if (m !== 'sotw' && m !== 'delta') throw new Error(`--modes: "${m}" is not sotw or delta`);
    return m as XdsMode;
  });
  const services = int('services', values.services, 1);
  if (values.client !== 'h2' && values.client !== 'grpc-js') throw new Error(`--client: "${values.client}" is not h2 or grpc-js`);
  const client: ClientKind = values.client;
  return {
    proxies,
    modes,
    quick: values.quick,
    services,
    endpoints: int('endpoints', values.endpoints, 1),
    namespaces: int('namespaces', values.namespaces, 1),
    debounceMs: int('debounce-ms', values['debounce-ms'], 0),
    repetitions: int('repetitions', values.repetitions ?? '3', 1),
    churnSeconds: int('churn-seconds', values['churn-seconds'] ?? (values.quick ? '3' : '10'), 1),
    workers: int('workers', values.workers, 1),
    client,
    timeoutMs: int('timeout-s', values['timeout-s'], 1) * 1000,
    pin: !values['no-pin'] && availableParallelism() >= 2,
    vhds: !values['no-vhds'] && process.env.SKEIN_BENCH_VHDS !== '0',
  };
}

/** An error as one line for the table: the first line, and the last line of the control plane's log when there is one. */
function oneLine(message: string): string {
  const lines = message.split('\n').map((l) => l.trim()).filter(Boolean);
  const text = lines.length > 1 ? `${lines[0]} ${lines[lines.length - 1]}` : (lines[0] ?? 'failed');
  return text.length > 240 ? `${text.slice(0, 237)}...` : text;
}

async function main(): Promise<number> {
  let flags;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (!controlPlaneAvailable()) {
    process.stderr.write(`bench: the control plane entry point is not there yet (${SKEIN_CLI} → control-plane/main.ts)\n`);
    return 2;
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'skein-bench-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const runs: RunResult[] = [];
  const started = Date.now();
  try {
    log(`generating ${flags.services} Services × ${flags.endpoints} endpoints in ${flags.namespaces} namespaces`);
    const registry = new GeneratedRegistry(join(dir, 'registry.yaml'), {
      services: flags.services,
      endpointsPerService: flags.endpoints,
      namespaces: flags.namespaces,
    });
    registry.write();
    for (const proxies of flags.proxies) {
      for (const mode of flags.modes) {
        try {
          runs.push(
            await runOnce({
              proxies,
              mode,
              client: flags.client,
              vhds: flags.vhds,
              registry,
              debounceMs: flags.debounceMs,
              workers: Math.min(flags.workers, proxies),
              pin: flags.pin ? { controlPlane: '0', load: '1' } : undefined,
              repetitions: flags.repetitions,
              churnSeconds: flags.churnSeconds,
              churnPerTick: Math.max(1, Math.round(flags.services / 100)),
              syncTimeoutMs: proxies >= 1000 ? 120_000 : 60_000,
              changeTimeoutMs: flags.timeoutMs,
              log,
            }),
          );
        } catch (err) {
          log(`[${mode} × ${proxies}] failed: ${(err as Error).message}`);
          runs.push({
            proxies,
            mode,
            synced: 0,
            syncSeconds: 0,
            syncCpuSeconds: 0,
            single: undefined,
            churn: undefined,
            rssBytes: Number.NaN,
            peakRssBytes: Number.NaN,
            sampledMaxRssBytes: Number.NaN,
            loadErrors: 0,
            error: oneLine((err as Error).message),
          });
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const checks = checkTargets(runs);
  process.stdout.write(`\nControl-plane benchmark: ${flags.services} Services × ${flags.endpoints} endpoints, ` +
    `${flags.namespaces} namespaces, debounce ${flags.debounceMs} ms, ` +
    `${flags.pin ? 'control plane on CPU 0, load generator on CPU 1' : 'no CPU pinning'}, simulated proxies on ${flags.client === 'h2' ? 'bare HTTP/2 streams' : "grpc-js's client"}, ` +
    `delta ${flags.vhds ? 'with VHDS' : 'without VHDS (RDS only)'}, ` +
    `${((Date.now() - started) / 1000).toFixed(0)} s\n\n`);
  process.stdout.write(`${renderTable(runs, checks, flags.debounceMs)}\n`);
  const meta = {
    services: flags.services,
    endpoints_per_service: flags.endpoints,
    namespaces: flags.namespaces,
    debounce_ms: flags.debounceMs,
    client: flags.client,
    vhds: flags.vhds,
    repetitions: flags.repetitions,
    churn_seconds: flags.churnSeconds,
    timeout_s: flags.timeoutMs / 1000,
    pinned: flags.pin,
    quick: flags.quick,
    node: process.version,
  };
  process.stdout.write(`${toJson(meta, runs, checks)}\n`);
  return runs.some((r) => r.error) ? 1 : 0;
}

// Ctrl-C or kill: exit through process.exit so the 'exit' hooks stop the control plane and the load generators.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
