// Idle memory of one sidecar holding a large mesh: control plane on a generated registry, one sidecar, RSS once settled.
// Also runs alone: `node test/bench/lib/idle-rss.ts [--services 1000] [--runs 1]` prints one JSON line per run.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from './pinned-process.ts';
import { memoryUsage } from './proc-stats.ts';
import { GeneratedRegistry, namespaceName } from './registry-gen.ts';
import { ControlPlane, Sidecar } from './sidecar-pair.ts';

export interface IdleRssResult {
  readonly services: number;
  /** Clusters the sidecar reported holding (one per Service port). */
  readonly clusters: number;
  readonly rssBytes: number;
  /** The private (anonymous) part of the RSS: the heap and malloc, without the node binary's shared file pages. */
  readonly rssAnonBytes: number;
  /** Seconds from sidecar start until every cluster was there. */
  readonly loadSeconds: number;
  /** From /proc/PID/smaps_rollup: pages only this process maps vs pages shared (mostly the node binary). */
  readonly privateBytes?: number;
  readonly sharedBytes?: number;
  /** RSS backed by files (the node binary and libraries) rather than anonymous memory. */
  readonly rssFileBytes?: number;
  /** V8 and Node as the sidecar reports them (nodejs_* metrics, read after the RSS): heap used/total, external. */
  readonly heapUsedBytes?: number;
  readonly heapTotalBytes?: number;
  readonly externalBytes?: number;
}

function kb(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** Memory of `pid` from /proc: RSS split into private/shared (smaps_rollup) and anonymous/file (status). */
export function procMemory(pid: number): Required<Pick<IdleRssResult, 'rssBytes' | 'rssAnonBytes' | 'rssFileBytes' | 'privateBytes' | 'sharedBytes'>> {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    rssBytes: memoryUsage(pid).rss,
    rssAnonBytes: kb(status, 'RssAnon'),
    rssFileBytes: kb(status, 'RssFile'),
    privateBytes: kb(rollup, 'Private_Clean') + kb(rollup, 'Private_Dirty'),
    sharedBytes: kb(rollup, 'Shared_Clean') + kb(rollup, 'Shared_Dirty'),
  };
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** Starts a control plane on `services` generated Services and one sidecar at `ip`; measures its RSS after `settleMs`. */
export async function measureIdleRss(o: {
  dir: string;
  services: number;
  endpointsPerService: number;
  ip: string;
  cpus: string | undefined;
  settleMs: number;
  log: (line: string) => void;
}): Promise<IdleRssResult> {
  const dir = join(o.dir, 'idle');
  mkdirSync(dir, { recursive: true });
  const registry = new GeneratedRegistry(join(dir, 'registry.yaml'), {
    services: o.services,
    endpointsPerService: o.endpointsPerService,
    namespaces: 10,
  });
  registry.write();
  const expected = registry.clusterNames().length;
  const controlPlane = await ControlPlane.start(registry.path, dir, o.cpus);
  let sidecar: Sidecar | undefined;
  try {
    const started = Date.now();
    sidecar = await Sidecar.start(
      {
        name: 'idle',
        pod: 'idle-0',
        namespace: namespaceName(0),
        ip: o.ip,
        outboundPort: await freePort(o.ip),
        inboundPort: await freePort(o.ip),
        appPorts: [8080],
      },
      controlPlane.xds,
      o.cpus,
    );
    let clusters = 0;
    const deadline = Date.now() + 60_000;
    while ((clusters = await sidecar.clusterCount()) < expected && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    const loadSeconds = (Date.now() - started) / 1000;
    o.log(`idle sidecar holds ${clusters}/${expected} clusters after ${loadSeconds.toFixed(1)} s; settling ${o.settleMs} ms`);
    await new Promise((r) => setTimeout(r, o.settleMs));
    // RSS first: rendering the metrics page allocates.
    const mem = procMemory(sidecar.proc.pid);
    const stats = await (await fetch(`${sidecar.admin}/stats/prometheus`, { signal: AbortSignal.timeout(10_000) })).text();
    return {
      services: o.services,
      clusters,
      loadSeconds,
      ...mem,
      heapUsedBytes: metric(stats, 'skein_sidecar_nodejs_heap_size_used_bytes'),
      heapTotalBytes: metric(stats, 'skein_sidecar_nodejs_heap_size_total_bytes'),
      externalBytes: metric(stats, 'skein_sidecar_nodejs_external_memory_bytes'),
    };
  } finally {
    await sidecar?.stop();
    await controlPlane.stop();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      services: { type: 'string', default: '1000' },
      runs: { type: 'string', default: '1' },
      settle: { type: 'string', default: '20' },
      ip: { type: 'string', default: '127.0.0.4' },
    },
  });
  const dir = mkdtempSync(join(tmpdir(), 'skein-idle-'));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const MiB = 2 ** 20;
  try {
    for (let run = 0; run < Number(values.runs); run++) {
      const r = await measureIdleRss({
        dir,
        services: Number(values.services),
        endpointsPerService: 3,
        ip: values.ip,
        cpus: undefined,
        settleMs: Number(values.settle) * 1000,
        log,
      });
      const mib = (n: number | undefined) => ((n ?? Number.NaN) / MiB).toFixed(1);
      log(
        `idle sidecar, ${r.clusters} clusters: RSS ${mib(r.rssBytes)} MiB (private ${mib(r.privateBytes)}, shared ${mib(r.sharedBytes)}; ` +
          `anonymous ${mib(r.rssAnonBytes)}, file ${mib(r.rssFileBytes)}); V8 heap used ${mib(r.heapUsedBytes)} of ${mib(r.heapTotalBytes)}, external ${mib(r.externalBytes)}`,
      );
      process.stdout.write(`${JSON.stringify({ bench: 'idle-rss', ...r })}\n`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
