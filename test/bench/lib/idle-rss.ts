// Idle memory of one sidecar holding a large mesh: control plane on a generated registry, one sidecar, RSS once settled.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
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
    const rssBytes = memoryUsage(sidecar.proc.pid).rss;
    const anon = /^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${sidecar.proc.pid}/status`, 'utf8'));
    return { services: o.services, clusters, rssBytes, rssAnonBytes: anon ? Number(anon[1]) * 1024 : Number.NaN, loadSeconds };
  } finally {
    await sidecar?.stop();
    await controlPlane.stop();
  }
}
