// VHDS over delta ADS, end to end: registry file → cache → xDS server → a real grpc-js delta client that declares it.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type DeltaDiscoveryResponse__Output,
  type Node,
  type RouteConfiguration__Output,
  TYPE_URL,
  unpack,
  VHDS_FEATURE,
  type VirtualHost__Output,
} from '../../../proto/index.ts';
import { createSnapshotCache, type ControlPlaneCache } from '../../../control-plane/cache/index.ts';
import { FileRegistry } from '../../../control-plane/registry/file.ts';
import { startXdsServer, StatusRegistry, type XdsServerHandle } from '../../../control-plane/xds/index.ts';
import type { XdsLog } from '../../../control-plane/xds/log.ts';
import { adsClient, type DeltaReader, eventually, openDelta, openSotw } from './ads-client.ts';

const svc = (name: string, i: number): string =>
  `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: shop\nspec:\n  clusterIP: 10.96.0.${i + 1}\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n`;
const slice = (service: string, ip: string): string =>
  `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ${service}-abc\n  namespace: shop\n  labels:\n    kubernetes.io/service-name: ${service}\naddressType: IPv4\nports: [{ name: http, port: 8080 }]\nendpoints:\n  - addresses: ["${ip}"]\n    conditions: { ready: true }\n`;
const registryText = (services: readonly string[]): string =>
  services.flatMap((s, i) => [svc(s, i), slice(s, `10.0.0.${i + 1}`)]).join('---\n');

const node = (id: string, features: string[] = []): Node => ({
  id,
  user_agent_name: 'skein-sidecar',
  client_features: features,
  metadata: { fields: { NAMESPACE: { stringValue: 'shop' } } },
});

const vhName = (service: string) => `outbound/shop/${service}.shop.svc.cluster.local:80`;
const names = (r: { resources: { name: string }[] }) => r.resources.map((x) => x.name).sort();

let dir: string | undefined;
let registry: FileRegistry | undefined;
let cache: ControlPlaneCache | undefined;
let xds: XdsServerHandle | undefined;
const clients: { close(): void }[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await xds?.close();
  cache?.close();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  xds = cache = registry = dir = undefined;
});

const warnings: string[] = [];
const log: XdsLog = { warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };

async function start(services: readonly string[]) {
  dir = await mkdtemp(join(tmpdir(), 'skein-vhds-'));
  const path = join(dir, 'registry.yaml');
  await writeFile(path, registryText(services));
  registry = new FileRegistry(path, { debounceMs: 5, pollMs: 60_000 });
  await registry.start();
  cache = createSnapshotCache(registry, { debounceMs: 5 });
  const status = new StatusRegistry();
  xds = await startXdsServer({ host: '127.0.0.1', port: 0, log }, cache, status);
  const client = adsClient(xds.address);
  clients.push(client);
  return { path, status, client };
}

/** Reads responses (ACKing each) until one of `typeUrl` arrives; returns it and the other types seen on the way. */
async function nextOf(s: DeltaReader, typeUrl: string, seen: string[] = []): Promise<DeltaDiscoveryResponse__Output> {
  for (;;) {
    const r = await s.next();
    s.send({ type_url: r.type_url, response_nonce: r.nonce });
    if (r.type_url === typeUrl) return r;
    seen.push(r.type_url);
  }
}

/** ACKs whatever arrives for `ms` and returns the responses. */
async function drain(s: DeltaReader, ms: number): Promise<DeltaDiscoveryResponse__Output[]> {
  const out: DeltaDiscoveryResponse__Output[] = [];
  const until = Date.now() + ms;
  for (;;) {
    const left = until - Date.now();
    if (left <= 0) return out;
    try {
      const r = await s.next(left);
      s.send({ type_url: r.type_url, response_nonce: r.nonce });
      out.push(r);
    } catch {
      return out;
    }
  }
}

describe('VHDS (delta ADS, node.client_features skein.vhds)', () => {
  it('sends the route table with vhds and no virtual hosts, each virtual host as its own resource, and only what a Service added or removed changes', async () => {
    const { path, status, client } = await start(['api', 'cart', 'web']);
    const s = openDelta(client);
    s.send({ node: node('vhds-1', [VHDS_FEATURE]), type_url: TYPE_URL.cluster });
    s.send({ type_url: TYPE_URL.listener });
    s.send({ type_url: TYPE_URL.route, resource_names_subscribe: ['outbound/shop'] });
    s.send({ type_url: TYPE_URL.virtualHost, resource_names_subscribe: ['*'] });
    const order: string[] = [];
    const rds = await nextOf(s, TYPE_URL.route, order);
    expect(order).toEqual([TYPE_URL.cluster, TYPE_URL.listener]);
    const table = unpack<RouteConfiguration__Output>(rds.resources[0]?.resource as never);
    expect(table.name).toBe('outbound/shop');
    expect(table.virtual_hosts).toEqual([]);
    expect(table.vhds?.config_source).toMatchObject({ ads: {}, resource_api_version: 'V3' });

    const first = await nextOf(s, TYPE_URL.virtualHost);
    expect(names(first)).toEqual(['api', 'cart', 'web'].map(vhName));
    for (const r of first.resources) {
      const vh = unpack<VirtualHost__Output>(r.resource as never);
      expect(r.name).toBe(`outbound/shop/${vh.name}`);
      // Its own namespace's variant: the short names too.
      expect(vh.domains).toContain(vh.name.split('.')[0]);
      expect(r.version).toMatch(/^[0-9a-f]{16}$/);
    }
    await eventually(() => {
      const types = status.list()[0]?.types.map((t) => `${t.type}:${t.state}`);
      expect(types).toEqual(['CDS:SYNCED', 'LDS:SYNCED', 'RDS:SYNCED', 'VHDS:SYNCED']);
    });

    // A Service added: its cluster, its virtual host, and no route table.
    await writeFile(path, registryText(['api', 'cart', 'web', 'orders']));
    const seen: string[] = [];
    const added = await nextOf(s, TYPE_URL.virtualHost, seen);
    expect(names(added)).toEqual([vhName('orders')]);
    expect(added.removed_resources).toEqual([]);
    const rest = await drain(s, 300);
    const types = [...seen, ...rest.map((r) => r.type_url)];
    expect(types).not.toContain(TYPE_URL.route);
    expect(types).toContain(TYPE_URL.cluster);

    // Removed again: only its name, in removed_resources.
    await writeFile(path, registryText(['api', 'cart', 'web']));
    const removed = await nextOf(s, TYPE_URL.virtualHost);
    expect(removed.resources).toEqual([]);
    expect(removed.removed_resources).toEqual([vhName('orders')]);
    expect((await drain(s, 300)).map((r) => r.type_url)).not.toContain(TYPE_URL.route);
  });

  it('a client that does not declare it gets the whole table, and nothing for the VirtualHost type', async () => {
    const { path, status, client } = await start(['api', 'web']);
    const s = openDelta(client);
    s.send({ node: node('plain-1'), type_url: TYPE_URL.route, resource_names_subscribe: ['outbound/shop'] });
    s.send({ type_url: TYPE_URL.virtualHost, resource_names_subscribe: ['*'] });
    const rds = await nextOf(s, TYPE_URL.route);
    const table = unpack<RouteConfiguration__Output>(rds.resources[0]?.resource as never);
    expect(table.vhds).toBeNull();
    expect(table.virtual_hosts.map((v) => v.name)).toEqual(['api.shop.svc.cluster.local:80', 'web.shop.svc.cluster.local:80']);
    await eventually(() => expect(status.list()[0]?.unknownTypeUrls).toEqual([TYPE_URL.virtualHost]));

    await writeFile(path, registryText(['api', 'web', 'orders']));
    const next = await nextOf(s, TYPE_URL.route);
    expect(unpack<RouteConfiguration__Output>(next.resources[0]?.resource as never).virtual_hosts).toHaveLength(3);
    expect((await drain(s, 200)).map((r) => r.type_url)).not.toContain(TYPE_URL.virtualHost);
  });

  it('a state-of-the-world stream declaring it is served as before (VHDS is delta only)', async () => {
    const { client } = await start(['api']);
    const s = openSotw(client);
    clients.push(s);
    s.send({ node: node('sotw-1', [VHDS_FEATURE]), type_url: TYPE_URL.route, resource_names: ['outbound/shop'] });
    const r = await s.next();
    const table = unpack<RouteConfiguration__Output>(r.resources[0] as never);
    expect(table.virtual_hosts.map((v) => v.name)).toEqual(['api.shop.svc.cluster.local:80']);
    expect(table.vhds).toBeNull();
  });
});
