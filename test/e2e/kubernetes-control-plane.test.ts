// `skein control-plane --kubernetes` as a user runs it, against a fake API server that speaks real list/watch.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeKubeApiServer } from '../fakes/kube-apiserver.ts';

const SKEIN = fileURLToPath(new URL('../../cli/skein.ts', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const slice = (ip: string) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'web-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: [{ addresses: [ip], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'web-1', namespace: 'shop' } }],
});

let fake: FakeKubeApiServer;
let dir: string;
let child: ChildProcess | undefined;
let admin = '';
let logs = '';

beforeAll(async () => {
  fake = await FakeKubeApiServer.start();
  dir = await mkdtemp(join(tmpdir(), 'skein-k8s-e2e-'));
  fake.create({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
  });
  fake.create(slice('10.1.0.5'));
  fake.create({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-1', namespace: 'shop' },
    spec: { serviceAccountName: 'web', containers: [{ name: 'web', image: 'x' }] },
  });
  const kubeconfig = await fake.writeKubeconfig(join(dir, 'kubeconfig'));
  const [xdsPort, adminPort] = [await freePort(), await freePort()];
  admin = `http://127.0.0.1:${adminPort}`;
  child = spawn(
    process.execPath,
    [SKEIN, 'control-plane', '--kubernetes', '--kubeconfig', kubeconfig, '--xds-address', `127.0.0.1:${xdsPort}`, '--admin-address', `127.0.0.1:${adminPort}`, '--xds-tls-address', 'none'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr?.on('data', (d: Buffer) => (logs += d.toString()));
});

afterAll(async () => {
  child?.kill('SIGTERM');
  if (child && child.exitCode === null) await new Promise((r) => child?.once('exit', r));
  await fake?.close();
  await rm(dir, { recursive: true, force: true });
});

const clusterLoadAssignment = async (): Promise<string | undefined> => {
  const res = await fetch(`${admin}/debug/config_dump?scope=envoy/shop`);
  if (!res.ok) return undefined;
  const dump = (await res.json()) as { types: Record<string, { resources: { name: string; resource: object }[] }> };
  const cla = dump.types.EDS?.resources.find((r) => r.name === 'outbound|80||web.shop.svc.cluster.local');
  return cla ? JSON.stringify(cla.resource) : undefined;
};

describe('skein control-plane --kubernetes', () => {
  it('serves the cluster from the API server and follows EndpointSlice changes', async () => {
    await until('readiness', async () => ((await fetch(`${admin}/readyz`)).status === 200 ? true : undefined), 60_000).catch(
      (err: Error) => {
        throw new Error(`${err.message}\n${logs}`);
      },
    );
    const first = await until('the first CLA', clusterLoadAssignment);
    expect(first).toContain('10.1.0.5');
    expect(first).toContain('"service_account"');
    fake.update(slice('10.1.0.6'));
    const next = await until('the CLA with the new endpoint', async () => {
      const cla = await clusterLoadAssignment();
      return cla?.includes('10.1.0.6') ? cla : undefined;
    });
    expect(next).not.toContain('10.1.0.5');
  }, 90_000);
});
