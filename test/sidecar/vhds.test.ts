// The sidecar on VHDS against the real control plane: it routes through a table assembled from VirtualHost resources.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { get } from './outbound-get.ts';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSnapshotCache } from '../../control-plane/cache/index.ts';
import { FileRegistry } from '../../control-plane/registry/file.ts';
import { startXdsServer, StatusRegistry } from '../../control-plane/xds/index.ts';
import { runSidecar } from '../../sidecar/main.ts';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A Service `name` in namespace default whose one endpoint is 127.0.0.1:<port> (a backend of this test). */
function serviceDocs(name: string, clusterIP: string, port: number): string {
  return [
    `apiVersion: v1\nkind: Service\nmetadata: { name: ${name}, namespace: default }\nspec:\n  clusterIP: ${clusterIP}\n  ports: [{ name: http, port: 80, targetPort: ${port} }]\n`,
    `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ${name}-abc\n  namespace: default\n  labels: { kubernetes.io/service-name: ${name} }\naddressType: IPv4\nports: [{ name: http, port: ${port} }]\nendpoints:\n  - addresses: ["127.0.0.1"]\n    conditions: { ready: true }\n`,
  ].join('---\n');
}

async function backend(text: string): Promise<number> {
  const server: Server = createServer((req, res) => res.end(`${text} ${req.url}`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => server.close(r)));
  return (server.address() as AddressInfo).port;
}

async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean, what: string, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (check(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('sidecar on VHDS (real control plane)', () => {
  it('routes by Host through virtual hosts that came as VHDS resources, and follows a Service added and removed', async () => {
    const webPort = await backend('web');
    const apiPort = await backend('api');
    const dir = await mkdtemp(join(tmpdir(), 'skein-sidecar-vhds-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'registry.yaml');
    await writeFile(path, serviceDocs('web', '10.96.0.1', webPort));
    const registry = new FileRegistry(path, { debounceMs: 5, pollMs: 60_000 });
    await registry.start();
    cleanups.push(() => registry.stop());
    const cache = createSnapshotCache(registry, { debounceMs: 5 });
    cleanups.push(() => cache.close());
    const status = new StatusRegistry();
    const xds = await startXdsServer({ host: '127.0.0.1', port: 0 }, cache, status);
    cleanups.push(() => xds.close());

    const abort = new AbortController();
    let ports: { admin: number; outbound: number; inbound: number } | undefined;
    await new Promise<void>((resolve, reject) => {
      const run = runSidecar(
        ['--control-plane', xds.address, '--pod', 'client-0', '--namespace', 'default', '--service-account', 'client', '--ip', '127.0.0.1',
          '--outbound-address', '127.0.0.1:0', '--inbound-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--drain-timeout', '100ms', '--mtls', 'off'],
        { env: {}, signal: abort.signal, onStarted: (p) => { ports = p; resolve(); } },
      );
      run.catch(reject);
      cleanups.push(async () => {
        abort.abort();
        expect(await run).toBe(0);
      });
    });
    const admin = `http://127.0.0.1:${ports!.admin}`;
    await eventually(() => fetch(`${admin}/ready`).then((r) => r.status), (s) => s === 200, 'the sidecar to be ready');

    // The control plane sent it the VHDS form: RDS without virtual hosts, each one as a VirtualHost resource.
    const proxy = status.list().find((p) => p.nodeId.includes('client-0'));
    expect(proxy?.mode).toBe('delta');
    expect(proxy?.types.map((t) => `${t.type}:${t.state}`)).toEqual(['CDS:SYNCED', 'EDS:SYNCED', 'LDS:SYNCED', 'RDS:SYNCED', 'VHDS:SYNCED']);
    const dump = (await (await fetch(`${admin}/config_dump`)).json()) as { routes: { name: string; vhds?: boolean; virtualHosts: { name: string }[] }[] };
    expect(dump.routes).toMatchObject([{ name: 'outbound/default', vhds: true, virtualHosts: [{ name: 'web.default.svc.cluster.local:80' }] }]);

    const { outbound } = ports!;
    expect(await get(outbound, '/a', 'web')).toEqual({ status: 200, body: 'web /a' });
    expect(await get(outbound, '/b', 'web.default.svc.cluster.local')).toEqual({ status: 200, body: 'web /b' });
    expect((await get(outbound, '/c', 'api')).status).toBe(404);

    await writeFile(path, [serviceDocs('web', '10.96.0.1', webPort), serviceDocs('api', '10.96.0.2', apiPort)].join('---\n'));
    expect(await eventually(() => get(outbound, '/d', 'api'), (r) => r.status === 200, 'api to be routed')).toEqual({ status: 200, body: 'api /d' });
    expect(await get(outbound, '/e', 'web')).toEqual({ status: 200, body: 'web /e' });

    await writeFile(path, serviceDocs('web', '10.96.0.1', webPort));
    await eventually(() => get(outbound, '/f', 'api'), (r) => r.status === 404, 'api to be gone');
    expect(await get(outbound, '/g', 'web')).toEqual({ status: 200, body: 'web /g' });
  }, 30_000);
});
