// Idle control plane on a generated mesh, from a registry file and from a (fake) Kubernetes API server: start-up time and RSS.
// `node test/bench/lib/idle-control-plane.ts [--services 1000] [--endpoints 10] [--source file,kubernetes]` prints a line per
// source, then one JSON line.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadAll } from 'js-yaml';
import { FakeKubeApiServer } from '../../fakes/kube-apiserver.ts';
import { ControlPlaneProcess } from './control-plane-process.ts';
import { procMemory } from './idle-rss.ts';
import { GeneratedRegistry } from './registry-gen.ts';

export interface IdleControlPlaneResult {
  readonly source: 'file' | 'kubernetes';
  readonly objects: number;
  /** From spawning the control plane until /readyz answers 200. */
  readonly readySeconds: number;
  readonly rssBytes: number;
  readonly peakRssBytes: number;
  readonly privateBytes: number;
  /** The slowest /readyz answer during start-up (polled every 100 ms): how long health checks can wait. */
  readonly slowestReadyzMs: number;
}

function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

async function measure(source: 'file' | 'kubernetes', registry: GeneratedRegistry, dir: string, settleMs: number): Promise<IdleControlPlaneResult> {
  let fake: FakeKubeApiServer | undefined;
  let objects = 0;
  const options: { registry?: string; kubeconfig?: string } = {};
  if (source === 'file') {
    options.registry = registry.path;
    objects = loadAll(readFileSync(registry.path, 'utf8')).filter(Boolean).length;
  } else {
    fake = await FakeKubeApiServer.start();
    for (const o of loadAll(readFileSync(registry.path, 'utf8'))) {
      if (!o) continue;
      fake.create(o as Parameters<FakeKubeApiServer['create']>[0]);
      objects++;
    }
    options.kubeconfig = await fake.writeKubeconfig(join(dir, 'kubeconfig'));
  }
  const started = performance.now();
  const cp = await ControlPlaneProcess.start({ ...options, readyTimeoutMs: 180_000 });
  try {
    const readySeconds = (performance.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, settleMs));
    const mem = procMemory(cp.pid);
    return {
      source,
      objects,
      readySeconds,
      rssBytes: mem.rssBytes,
      peakRssBytes: peakRss(cp.pid),
      privateBytes: mem.privateBytes,
      slowestReadyzMs: Math.round(cp.slowestReadyzMs),
    };
  } finally {
    await cp.stop();
    await fake?.close();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      services: { type: 'string', default: '1000' },
      endpoints: { type: 'string', default: '10' },
      namespaces: { type: 'string', default: '10' },
      source: { type: 'string', default: 'file,kubernetes' },
      settle: { type: 'string', default: '3' },
    },
  });
  const dir = mkdtempSync(join(tmpdir(), 'skein-idle-cp-'));
  try {
    const registry = new GeneratedRegistry(join(dir, 'registry.yaml'), {
      services: Number(values.services),
      endpointsPerService: Number(values.endpoints),
      namespaces: Number(values.namespaces),
    });
    registry.write();
    const results: IdleControlPlaneResult[] = [];
    for (const source of values.source.split(',')) {
      if (source !== 'file' && source !== 'kubernetes') throw new Error(`--source: "${source}" is not file or kubernetes`);
      const r = await measure(source, registry, dir, Number(values.settle) * 1000);
      const mb = (n: number) => (n / 1e6).toFixed(0);
      process.stderr.write(
        `idle control plane (${source}, ${r.objects} objects): ready in ${r.readySeconds.toFixed(1)} s; RSS ${mb(r.rssBytes)} MB ` +
          `(private ${mb(r.privateBytes)}), peak ${mb(r.peakRssBytes)} MB; slowest /readyz during start-up ${r.slowestReadyzMs} ms\n`,
      );
      results.push(r);
    }
    process.stdout.write(`${JSON.stringify({ bench: 'idle-control-plane', services: Number(values.services), results })}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
