// Tests the sidecar's ADS client against an in-process xDS peer: ACK/NACK, subscriptions, warming, reconnect, fallback.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { pack, TYPE_URL, VHDS_FEATURE } from '../../../proto/index.ts';
import { ADS_SOURCE, outboundListener } from './listener-fixture.ts';
import { XdsClient, type XdsClientOptions } from '../../../sidecar/xds/client.ts';
import { createXdsMetrics } from '../../../sidecar/xds/metrics.ts';
import type { MeshConfig } from '../../../sidecar/xds/model.ts';
import { buildNode, setCertNotAfter } from '../../../sidecar/xds/node.ts';
import { type RecordedRequest, XdsPeer } from '../../fakes/xds-peer.ts';

const WEB = 'outbound|80||web.default.svc.cluster.local';
const API = 'outbound|8080||api.default.svc.cluster.local';
const ROUTES = 'outbound/default';

const cluster = (name: string, lb = 'LEAST_REQUEST') => ({
  name,
  type: 'EDS',
  eds_cluster_config: { eds_config: ADS_SOURCE, service_name: name },
  connect_timeout: { seconds: 1 },
  lb_policy: lb,
});
const cla = (name: string, ...ips: string[]) => ({
  cluster_name: name,
  endpoints: [
    {
      load_balancing_weight: { value: 1 },
      lb_endpoints: ips.map((ip) => ({
        endpoint: { address: { socket_address: { address: ip, port_value: 8080 } } },
        health_status: 'HEALTHY',
      })),
    },
  ],
});
const listener = () => outboundListener(ROUTES);
const routes = (...clusters: string[]) => ({
  name: ROUTES,
  virtual_hosts: clusters.map((c, i) => ({
    name: `vh${i}`,
    domains: [`host${i}:80`],
    routes: [{ match: { prefix: '/' }, route: { cluster: c } }],
  })),
});

function seed(peer: XdsPeer): void {
  peer.setAny(TYPE_URL.cluster, WEB, pack(TYPE_URL.cluster, cluster(WEB)));
  peer.setAny(TYPE_URL.endpoint, WEB, pack(TYPE_URL.endpoint, cla(WEB, '10.0.0.1')));
  peer.setAny(TYPE_URL.listener, 'virtualOutbound', pack(TYPE_URL.listener, listener()));
  peer.setAny(TYPE_URL.route, ROUTES, pack(TYPE_URL.route, routes(WEB)));
}

const node = buildNode({
  ip: '10.1.2.3',
  pod: 'web-0',
  namespace: 'default',
  serviceAccount: 'web',
  inboundPort: 15006,
  clusterDomain: 'cluster.local',
  version: '0.1.0',
});

interface Harness {
  client: XdsClient;
  configs: MeshConfig[];
  registry: Registry;
  next(): Promise<MeshConfig>;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function startClient(peer: XdsPeer, extra: Partial<XdsClientOptions> = {}): Harness {
  const configs: MeshConfig[] = [];
  const waiting: ((m: MeshConfig) => void)[] = [];
  const registry = new Registry();
  const client = new XdsClient({
    server: peer.address,
    node,
    backoff: { baseMs: 20, capMs: 100 },
    metrics: createXdsMetrics(registry),
    onConfig: (mesh) => {
      configs.push(mesh);
      waiting.shift()?.(mesh);
    },
    ...extra,
  });
  client.start();
  cleanups.push(() => client.stop());
  return {
    client,
    configs,
    registry,
    next: () =>
      new Promise<MeshConfig>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no MeshConfig; peer saw ${peer.summary().join(' | ')}`)), 5000);
        waiting.push((m) => {
          clearTimeout(t);
          resolve(m);
        });
      }),
  };
}

async function startPeer(options: { delta?: boolean; port?: number } = {}): Promise<XdsPeer> {
  const peer = await XdsPeer.start(options);
  cleanups.push(() => peer.stop());
  return peer;
}

const is = (type: string, kind: RecordedRequest['kind'], protocol?: string) => (r: RecordedRequest) =>
  r.typeUrl === type && r.kind === kind && (!protocol || r.protocol === protocol);

describe('XdsClient (delta)', () => {
  it('sends its node, subscribes CDS→EDS→LDS→RDS, ACKs, and publishes a warm config', async () => {
    const peer = await startPeer();
    seed(peer);
    const h = startClient(peer);
    const mesh = await h.next();

    expect(mesh.clusters.get(WEB)?.endpoints.map((e) => e.address)).toEqual(['10.0.0.1']);
    expect(mesh.clusters.get(WEB)?.lbPolicy).toBe('p2c-ewma');
    expect(mesh.listeners.get('virtualOutbound')).toMatchObject({ kind: 'http', routeConfigName: ROUTES });
    expect(mesh.routes.get(ROUTES)?.virtualHosts[0]?.domains).toEqual(['host0:80']);
    // A table with its virtual hosts inline: no VHDS subscription.
    expect(Object.keys(mesh.versions).sort()).toEqual([...Object.values(TYPE_URL)].filter((t) => t !== TYPE_URL.virtualHost).sort());

    const first = peer.requests[0]!;
    expect(first.protocol).toBe('delta');
    expect(first.typeUrl).toBe(TYPE_URL.cluster);
    expect(first.node?.id).toBe('sidecar~10.1.2.3~web-0.default~default.svc.cluster.local');
    expect(first.node?.user_agent_name).toBe('skein-sidecar');
    expect(first.node?.metadata?.fields.NAMESPACE?.stringValue).toBe('default');
    expect(first.node?.metadata?.fields.INBOUND_PORT?.stringValue).toBe('15006');
    expect(first.node?.client_features).toEqual([VHDS_FEATURE]);
    expect(peer.requests.filter((r) => r.node)).toHaveLength(1);

    const eds = await peer.waitFor(is(TYPE_URL.endpoint, 'request'));
    expect(eds.names).toEqual([WEB]);
    const rds = await peer.waitFor(is(TYPE_URL.route, 'request'));
    expect(rds.names).toEqual([ROUTES]);
    for (const t of Object.values(TYPE_URL)) if (t !== TYPE_URL.virtualHost) await peer.waitFor(is(t, 'ack'));
    expect(peer.requests.some((r) => r.kind === 'nack')).toBe(false);
    expect(peer.requests.some((r) => r.typeUrl === TYPE_URL.virtualHost)).toBe(false);

    const state = h.client.state();
    expect(state).toMatchObject({ connected: true, protocol: 'delta', published: true, warming: { warm: true } });
    const metrics = await h.registry.metrics();
    expect(metrics).toContain('skein_sidecar_xds_connected 1');
    expect(metrics).toMatch(/skein_sidecar_xds_updates_total\{type="CDS"\} 1/);
  });

  it('NACKs an invalid response with every error and keeps the last good config', async () => {
    const peer = await startPeer();
    seed(peer);
    const h = startClient(peer);
    const good = await h.next();

    const from = peer.requests.length;
    const bad = { ...cluster(API, 'MAGLEV'), connect_timeout: { seconds: -1 } };
    peer.set(TYPE_URL.cluster, bad);
    const nack = await peer.waitFor(is(TYPE_URL.cluster, 'nack'), 5000, from);
    expect(nack.errorText).toBe(
      `Cluster "${API}": lb_policy: MAGLEV is not supported\nCluster "${API}": connect_timeout: must not be negative`,
    );
    expect(h.client.current()).toBe(good);
    expect(h.client.state().lastNack).toMatchObject({ typeUrl: TYPE_URL.cluster, text: nack.errorText });
    expect(await h.registry.metrics()).toMatch(/skein_sidecar_xds_nacks_total\{type="CDS"\} 1/);

    // One bad resource rejects the whole response: the good one beside it is not applied either.
    const from2 = peer.requests.length;
    peer.set(TYPE_URL.cluster, cluster('outbound|81||other.default.svc.cluster.local'), { ...cluster(API), lb_policy: 'CLUSTER_PROVIDED' });
    const nack2 = await peer.waitFor(is(TYPE_URL.cluster, 'nack'), 5000, from2);
    expect(nack2.errorText).toBe(`Cluster "${API}": lb_policy: CLUSTER_PROVIDED is not supported`);
    expect(h.client.current()).toBe(good);
    expect(h.client.state().warming.missing).toEqual([]);

    // A later good response is accepted and published.
    peer.set(TYPE_URL.cluster, cluster(API));
    peer.set(TYPE_URL.endpoint, cla(API, '10.0.0.9'));
    const next = await h.next();
    expect([...next.clusters.keys()].sort()).toEqual([API, WEB].sort());
    expect(next.clusters.get(WEB)).toBe(good.clusters.get(WEB));
  });

  it('subscribes to EDS and RDS names as clusters and listeners appear, and unsubscribes when they go', async () => {
    const peer = await startPeer();
    seed(peer);
    const h = startClient(peer);
    await h.next();

    let from = peer.requests.length;
    peer.set(TYPE_URL.cluster, cluster(API, 'ROUND_ROBIN'));
    const sub = await peer.waitFor((r) => r.typeUrl === TYPE_URL.endpoint && r.names.includes(API), 5000, from);
    expect(sub.names).toEqual([API]);
    peer.set(TYPE_URL.endpoint, cla(API, '10.0.0.7', '10.0.0.8'));
    peer.set(TYPE_URL.route, routes(WEB, API));
    let mesh = await h.next();
    while (mesh.routes.get(ROUTES)?.virtualHosts.length !== 2 || mesh.clusters.get(API)?.endpoints.length !== 2) mesh = await h.next();
    expect(mesh.clusters.get(API)?.lbPolicy).toBe('round-robin');

    from = peer.requests.length;
    peer.remove(TYPE_URL.cluster, WEB);
    const unsub = await peer.waitFor((r) => r.typeUrl === TYPE_URL.endpoint && r.unsubscribe.length > 0, 5000, from);
    expect(unsub.unsubscribe).toEqual([WEB]);
  });

  it('waits for a routed cluster\'s endpoints before publishing, up to the warming timeout', async () => {
    const peer = await startPeer();
    seed(peer);
    peer.resources.get(TYPE_URL.endpoint)?.clear();
    // 1 s, not 300 ms: nothing may be published before it, and a stall of the test process between the client's
    // first update and this check (which takes a few ms) must not be taken for the timeout.
    const h = startClient(peer, { warmingTimeoutMs: 1000 });
    await peer.waitFor(is(TYPE_URL.route, 'ack'));
    expect(h.configs).toHaveLength(0);
    expect(h.client.state().warming.missing).toEqual([`ClusterLoadAssignment "${WEB}"`]);
    const mesh = await h.next();
    expect(mesh.clusters.get(WEB)?.endpoints).toEqual([]);
    peer.set(TYPE_URL.endpoint, cla(WEB, '10.0.0.1'));
    expect((await h.next()).clusters.get(WEB)?.endpoints).toHaveLength(1);
  });

  it('keeps its config while the server is down and resumes with initial_resource_versions', async () => {
    const peer = await startPeer();
    seed(peer);
    const h = startClient(peer);
    const mesh = await h.next();
    await peer.waitFor(is(TYPE_URL.route, 'ack'));
    const port = peer.port;
    await peer.stop();

    await waitUntil(() => !h.client.state().connected);
    const down = h.client.state();
    expect(down.lastError).toMatch(/UNAVAILABLE|CANCELLED|OK|INTERNAL/);
    expect(h.client.current()).toBe(mesh);
    await new Promise((r) => setTimeout(r, 150));
    expect(h.configs).toHaveLength(1);

    // A certificate rotated meanwhile: the reconnect's node carries its expiry (proxy-status after a restart).
    setCertNotAfter(node, new Date('2030-01-01T00:00:00Z'));
    const again = await startPeer({ port });
    seed(again);
    const cds = await again.waitFor(is(TYPE_URL.cluster, 'request'));
    expect(again.requests.find((r) => r.node)?.node?.metadata?.fields.CERT_NOT_AFTER?.stringValue).toBe('2030-01-01T00:00:00.000Z');
    expect(Object.keys(cds.initialVersions)).toEqual([WEB]);
    const eds = await again.waitFor(is(TYPE_URL.endpoint, 'request'));
    expect(eds.names).toEqual([WEB]);
    expect(Object.keys(eds.initialVersions)).toEqual([WEB]);
    await waitUntil(() => h.client.state().connected);
    expect(await h.registry.metrics()).toMatch(/skein_sidecar_xds_reconnects_total [1-9]/);
  });
});

const VHDS_ROUTES = { name: ROUTES, vhds: { config_source: ADS_SOURCE } };
const vhost = (name: string, cluster: string, domains = [`${name}:80`]) => ({
  name,
  domains,
  routes: [{ match: { prefix: '/' }, route: { cluster } }],
});
const setVhost = (peer: XdsPeer, v: ReturnType<typeof vhost>, resourceName = `${ROUTES}/${v.name}`) =>
  peer.setAny(TYPE_URL.virtualHost, resourceName, pack(TYPE_URL.virtualHost, v));

describe('XdsClient (VHDS)', () => {
  it('subscribes to every VirtualHost after a route table says vhds, and assembles the table from them', async () => {
    const peer = await startPeer();
    seed(peer);
    peer.setAny(TYPE_URL.route, ROUTES, pack(TYPE_URL.route, VHDS_ROUTES));
    peer.setAny(TYPE_URL.cluster, API, pack(TYPE_URL.cluster, cluster(API)));
    peer.setAny(TYPE_URL.endpoint, API, pack(TYPE_URL.endpoint, cla(API, '10.0.0.2')));
    setVhost(peer, vhost('web.default.svc.cluster.local:80', WEB, ['web:80', 'web']));
    setVhost(peer, vhost('api.default.svc.cluster.local:8080', API, ['api:8080']));
    const h = startClient(peer);
    const mesh = await h.next();
    const table = mesh.routes.get(ROUTES);
    expect(table?.vhds).toBe(true);
    // Sorted by name, as the control plane orders a table.
    expect(table?.virtualHosts.map((v) => v.name)).toEqual(['api.default.svc.cluster.local:8080', 'web.default.svc.cluster.local:80']);
    expect(table?.virtualHosts[1]?.domains).toEqual(['web:80', 'web']);
    // Warm means the routed clusters have their endpoints: both came before the first publish.
    expect(mesh.clusters.get(API)?.endpoints).toHaveLength(1);
    const vhds = await peer.waitFor(is(TYPE_URL.virtualHost, 'request'));
    const rds = peer.requests.findIndex(is(TYPE_URL.route, 'request'));
    expect(peer.requests.indexOf(vhds)).toBeGreaterThan(rds);
    expect(vhds.names).toEqual(['*']);
    await peer.waitFor(is(TYPE_URL.virtualHost, 'ack'));

    // One added, one removed: the table follows; an unrelated update keeps the same table object.
    setVhost(peer, vhost('cart.default.svc.cluster.local:80', WEB, ['cart:80']));
    peer.push(TYPE_URL.virtualHost);
    let next = await h.next();
    expect(next.routes.get(ROUTES)?.virtualHosts.map((v) => v.name)).toEqual([
      'api.default.svc.cluster.local:8080',
      'cart.default.svc.cluster.local:80',
      'web.default.svc.cluster.local:80',
    ]);
    peer.remove(TYPE_URL.virtualHost, `${ROUTES}/api.default.svc.cluster.local:8080`);
    next = await h.next();
    expect(next.routes.get(ROUTES)?.virtualHosts.map((v) => v.name)).toEqual(['cart.default.svc.cluster.local:80', 'web.default.svc.cluster.local:80']);
    const table2 = next.routes.get(ROUTES);
    peer.set(TYPE_URL.endpoint, cla(WEB, '10.0.0.9'));
    next = await h.next();
    expect(next.routes.get(ROUTES)).toBe(table2);
  });

  it('NACKs a bad VirtualHost naming the resource and field, and one whose domain another of its table has', async () => {
    const peer = await startPeer();
    seed(peer);
    peer.setAny(TYPE_URL.route, ROUTES, pack(TYPE_URL.route, VHDS_ROUTES));
    setVhost(peer, vhost('web', WEB, ['web:80']));
    const h = startClient(peer);
    const good = await h.next();
    await peer.waitFor(is(TYPE_URL.virtualHost, 'ack'));

    let from = peer.requests.length;
    setVhost(peer, { name: 'bad', domains: [], routes: [] });
    peer.push(TYPE_URL.virtualHost);
    let nack = await peer.waitFor(is(TYPE_URL.virtualHost, 'nack'), 5000, from);
    expect(nack.errorText).toBe('VirtualHost "outbound/default/bad": domains: must not be empty');
    peer.remove(TYPE_URL.virtualHost, `${ROUTES}/bad`);

    from = peer.requests.length;
    setVhost(peer, vhost('other', WEB, ['other:80']), `${ROUTES}/not-its-name`);
    peer.push(TYPE_URL.virtualHost);
    nack = await peer.waitFor(is(TYPE_URL.virtualHost, 'nack'), 5000, from);
    expect(nack.errorText).toBe('VirtualHost "outbound/default/not-its-name": name: "other" differs from the resource name\'s "not-its-name"');
    peer.remove(TYPE_URL.virtualHost, `${ROUTES}/not-its-name`);

    from = peer.requests.length;
    setVhost(peer, vhost('dup', WEB, ['dup:80', 'web:80']));
    peer.push(TYPE_URL.virtualHost);
    nack = await peer.waitFor(is(TYPE_URL.virtualHost, 'nack'), 5000, from);
    expect(nack.errorText).toBe('VirtualHost "outbound/default/dup": domains[1]: "web:80" duplicates VirtualHost "outbound/default/web"');
    // What was rejected never reached the table; the removals in between were accepted.
    expect(h.client.current()?.routes.get(ROUTES)?.virtualHosts.map((v) => v.name)).toEqual(['web']);
    expect(good.routes.get(ROUTES)?.virtualHosts.map((v) => v.name)).toEqual(['web']);
    expect(h.client.state().lastNack?.typeUrl).toBe(TYPE_URL.virtualHost);
  });
});

describe('XdsClient (state of the world)', () => {
  it('falls back to SotW when delta is UNIMPLEMENTED, ACKs with version_info and NACKs with the last good one', async () => {
    const peer = await startPeer({ delta: false });
    seed(peer);
    const h = startClient(peer);
    const good = await h.next();
    expect(good.clusters.get(WEB)?.endpoints).toHaveLength(1);
    expect(h.client.state().protocol).toBe('sotw');

    const cdsAck = await peer.waitFor(is(TYPE_URL.cluster, 'ack', 'sotw'));
    expect(cdsAck.versionInfo).not.toBe('');
    const eds = await peer.waitFor(is(TYPE_URL.endpoint, 'request', 'sotw'));
    expect(eds.names).toEqual([WEB]);
    expect(peer.requests[0]?.node?.id).toContain('sidecar~10.1.2.3~');
    // VHDS is asked for on delta streams only.
    expect(peer.requests[0]?.node?.client_features ?? []).not.toContain(VHDS_FEATURE);

    const from = peer.requests.length;
    peer.set(TYPE_URL.route, { name: ROUTES, virtual_hosts: [{ name: 'a', domains: ['x', 'x'], routes: [] }] });
    const nack = await peer.waitFor(is(TYPE_URL.route, 'nack', 'sotw'), 5000, from);
    expect(nack.errorText).toBe('RouteConfiguration "outbound/default": virtual_hosts[0].domains[1]: "x" is listed twice');
    const lastAck = peer.requests.filter(is(TYPE_URL.route, 'ack', 'sotw')).at(-1);
    expect(nack.versionInfo).toBe(lastAck?.versionInfo);
    expect(h.client.current()).toBe(good);

    // SotW CDS is the full state: a cluster missing from the response is deleted.
    peer.set(TYPE_URL.route, routes(API));
    peer.setAny(TYPE_URL.cluster, API, pack(TYPE_URL.cluster, cluster(API)));
    peer.remove(TYPE_URL.cluster, WEB);
    peer.set(TYPE_URL.endpoint, cla(API, '10.0.0.5'));
    let mesh = await h.next();
    while (mesh.clusters.has(WEB) || !mesh.clusters.get(API)?.endpoints.length) mesh = await h.next();
    expect([...mesh.clusters.keys()]).toEqual([API]);
  });

  it('resumes a SotW stream with the versions it last accepted', async () => {
    const peer = await startPeer({ delta: false });
    seed(peer);
    const h = startClient(peer);
    await h.next();
    const ack = await peer.waitFor(is(TYPE_URL.cluster, 'ack', 'sotw'));
    await peer.waitFor(is(TYPE_URL.route, 'ack', 'sotw'));
    const port = peer.port;
    await peer.stop();
    await waitUntil(() => !h.client.state().connected);

    const again = await startPeer({ delta: false, port });
    seed(again);
    const cds = await again.waitFor(is(TYPE_URL.cluster, 'request', 'sotw'));
    expect(cds.versionInfo).toBe(ack.versionInfo);
    expect(cds.node?.id).toBe(node.id);
    expect(again.requests.some((r) => r.protocol === 'delta')).toBe(false);
    await again.waitFor(is(TYPE_URL.route, 'ack', 'sotw'));
    expect(h.client.state().connected).toBe(true);
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
