// The per-type xDS services (CDS, EDS, LDS, RDS without ADS) against real grpc-js clients: each stream its own type.
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { formatProxyStatus } from '../../../control-plane/cli/proxy-status.ts';
import { type DiscoveryResponse__Output, TYPE_URL, unpack } from '../../../proto/index.ts';
import { type DeltaReader, envoyNode, eventually, openSotw, type PerTypeClient, perTypeClient, resourceNames, type SotwReader } from './ads-client.ts';
import { buildVirtualOutbound } from '../../../control-plane/translate/listener.ts';
import { cluster, endpoints, listener, resource, baseSnapshot, TEST_SCOPE } from './fake-cache.ts';
import { type Harness, startHarness } from './harness.ts';

const SCOPE = TEST_SCOPE;
let h: Harness;
let clients: PerTypeClient[] = [];
afterEach(async () => {
  for (const c of clients) c.client.close();
  clients = [];
  await h?.close();
});

const base = baseSnapshot;

/** Clients of the four services, all on one HTTP/2 connection (Envoy's config sources naming one xDS cluster). */
function services(): Record<'cluster' | 'endpoint' | 'listener' | 'route', PerTypeClient> {
  const cds = perTypeClient(h.server.address, 'cluster');
  const channel = cds.client.getChannel();
  const out = {
    cluster: cds,
    endpoint: perTypeClient(h.server.address, 'endpoint', channel),
    listener: perTypeClient(h.server.address, 'listener', channel),
    route: perTypeClient(h.server.address, 'route', channel),
  };
  clients.push(cds);
  return out;
}

const ack = (s: SotwReader, r: DiscoveryResponse__Output, names: string[] = []): void =>
  s.send({ version_info: r.version_info, response_nonce: r.nonce, resource_names: names });

const gauge = async (): Promise<string> => h.server.metrics.registry.getSingleMetricAsString('skein_xds_connected_proxies');

describe('per-type xDS services (no ADS)', () => {
  it('serves each SotW stream its own type, type_url implicit, and shows one node on four streams as one proxy', async () => {
    h = await startHarness(base());
    const svc = services();
    const node = envoyNode('sidecar~10.0.0.9~web-1.default~default.svc.cluster.local');
    // Envoy leaves type_url empty on per-type streams (it is implicit in the service); the responses carry it.
    const cds = svc.cluster.openSotw();
    cds.send({ node });
    const c = await cds.next();
    expect(c.type_url).toBe(TYPE_URL.cluster);
    expect(resourceNames(c)).toEqual(['a', 'b']);
    ack(cds, c);
    const eds = svc.endpoint.openSotw();
    eds.send({ node, resource_names: ['a'] });
    const e = await eds.next();
    expect(e.type_url).toBe(TYPE_URL.endpoint);
    expect(resourceNames(e)).toEqual(['a']);
    ack(eds, e, ['a']);
    // A second EDS stream of the node (Envoy opens one per EDS cluster's config source), type_url given this time.
    const eds2 = svc.endpoint.openSotw();
    eds2.send({ node, type_url: TYPE_URL.endpoint, resource_names: ['b'] });
    const e2 = await eds2.next();
    expect(resourceNames(e2)).toEqual(['b']);
    const lds = svc.listener.openSotw();
    lds.send({ node });
    const l = await lds.next();
    expect(l.type_url).toBe(TYPE_URL.listener);
    expect(resourceNames(l)).toEqual(['virtualOutbound']);
    ack(lds, l);
    const rds = svc.route.openSotw();
    rds.send({ node, resource_names: ['outbound/default'] });
    const r = await rds.next();
    expect(r.type_url).toBe(TYPE_URL.route);
    expect(resourceNames(r)).toEqual(['outbound/default']);
    // RDS is NACKed: recorded against the RDS type of the one proxy.
    rds.send({ version_info: '', response_nonce: r.nonce, resource_names: ['outbound/default'], error_detail: { code: 3, message: 'route outbound/default: bad' } });
    await eventually(() => {
      const proxies = h.status.list();
      expect(proxies).toHaveLength(1);
      const [p] = proxies;
      expect(p?.perTypeStreams).toBe(5);
      expect(p?.mode).toBe('sotw');
      expect(p?.types.map((t) => [t.type, t.state, t.subscribed])).toEqual([
        ['CDS', 'SYNCED', '*'],
        // One EDS stream ACKed, the other not yet: the type is STALE; two names over the two streams.
        ['EDS', 'STALE', '2'],
        ['LDS', 'SYNCED', '*'],
        ['RDS', 'NACKED', '1'],
      ]);
      expect(p?.types[3]?.lastNack?.message).toBe('route outbound/default: bad');
    });
    // skein proxy-status: one row for the node.
    const table = formatProxyStatus(h.status.list()).split('\n').filter((line) => line.startsWith('sidecar~'));
    expect(table).toHaveLength(1);
    expect(table[0]).toMatch(/SYNCED +STALE +SYNCED +NACKED .*SOTW \(no ADS, 5 streams\)/);
    expect(h.status.size).toBe(5);
    expect(h.server.streams()).toBe(5);
    // One node, one proxy in skein_xds_connected_proxies, however many streams it has.
    expect(await gauge()).toMatch(/ 1$/m);
    for (const s of [cds, eds, eds2, lds]) s.close();
    await eventually(() => expect(h.status.list()[0]?.types.map((t) => t.type)).toEqual(['RDS']));
    expect(await gauge()).toMatch(/ 1$/m);
    rds.close();
    await eventually(() => expect(h.status.size).toBe(0));
    expect(await gauge()).toMatch(/ 0$/m);
  });

  it('serves each delta stream its own type and records ACK and NACK', async () => {
    h = await startHarness(base());
    const svc = services();
    const node = envoyNode('delta-node');
    const cds = svc.cluster.openDelta();
    cds.send({ node });
    const c = await cds.next();
    expect(c.type_url).toBe(TYPE_URL.cluster);
    expect(c.resources.map((x) => x.name).sort()).toEqual(['a', 'b']);
    cds.send({ response_nonce: c.nonce });
    const eds = svc.endpoint.openDelta();
    eds.send({ node, resource_names_subscribe: ['b'] });
    const e = await eds.next();
    expect(e.type_url).toBe(TYPE_URL.endpoint);
    expect(e.resources.map((x) => x.name)).toEqual(['b']);
    eds.send({ response_nonce: e.nonce, error_detail: { code: 3, message: 'endpoint b: no' } });
    const lds = svc.listener.openDelta();
    lds.send({ node, type_url: TYPE_URL.listener });
    expect((await lds.next()).resources.map((x) => x.name)).toEqual(['virtualOutbound']);
    await eventually(() => {
      const [p] = h.status.list();
      expect(p?.mode).toBe('delta');
      expect(p?.perTypeStreams).toBe(3);
      expect(p?.types.map((t) => [t.type, t.state])).toEqual([
        ['CDS', 'SYNCED'],
        ['EDS', 'NACKED'],
        ['LDS', 'STALE'],
      ]);
    });
    expect(await h.server.metrics.registry.getSingleMetricAsString('skein_xds_nacks_total')).toContain('type="EDS"} 1');
    // A change reaches only the stream of its type.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.listener]: { put: [listener('virtualInbound', 15006)] } } });
    expect((await lds.next()).resources.map((x) => x.name)).toEqual(['virtualInbound']);
    await new Promise((r) => setTimeout(r, 100));
    expect(cds.buffered + eds.buffered).toBe(0);
  });

  it('ends a stream that asks for another type, naming both, and leaves the node\'s other streams alone', async () => {
    h = await startHarness(base());
    const svc = services();
    const node = envoyNode('confused');
    const lds = svc.listener.openSotw();
    lds.send({ node });
    const l = await lds.next();
    const cds = svc.cluster.openSotw();
    cds.send({ node, type_url: TYPE_URL.listener });
    const status = await cds.ended();
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toContain(TYPE_URL.cluster);
    expect(status.details).toContain(TYPE_URL.listener);
    // Delta too, and a later request (not only the first) is checked.
    const eds = svc.endpoint.openDelta();
    eds.send({ node, resource_names_subscribe: ['a'] });
    const e = await eds.next();
    eds.send({ type_url: TYPE_URL.route, response_nonce: e.nonce });
    const deltaStatus = await eds.ended();
    expect(deltaStatus.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(deltaStatus.details).toContain(TYPE_URL.endpoint);
    expect(deltaStatus.details).toContain(TYPE_URL.route);
    expect(await h.server.metrics.registry.getSingleMetricAsString('skein_xds_rejected_requests_total')).toContain('reason="wrong_type"} 2');
    // The LDS stream still works: it ACKs and gets the next change.
    ack(lds, l);
    await eventually(() => expect(h.status.list()[0]?.types.map((t) => [t.type, t.state])).toEqual([['LDS', 'SYNCED']]));
    h.cache.publish({ [SCOPE]: { [TYPE_URL.listener]: { put: [listener('virtualInbound', 15006)] } } });
    expect(resourceNames(await lds.next()).sort()).toEqual(['virtualInbound', 'virtualOutbound']);
  });

  for (const mode of ['sotw', 'delta'] as const) {
    it(`${mode}: a changed Cluster on the CDS stream is followed, once answered, by its ClusterLoadAssignment on the EDS stream`, async () => {
      h = await startHarness(base());
      const svc = services();
      const node = envoyNode(`warming-${mode}`);
      /** The next response's resource names; `answer` ACKs (or NACKs) it as Envoy would, after applying it. */
      type Next = (answer?: 'ack' | 'nack') => Promise<string[]>;
      let edsNext: Next;
      let cdsNext: Next;
      let edsBuffered: () => number;
      // The EDS stream opens first (it would otherwise be dispatched first too).
      if (mode === 'sotw') {
        const eds = svc.endpoint.openSotw();
        eds.send({ node, resource_names: ['a', 'b'] });
        ack(eds, await eds.next(), ['a', 'b']);
        const cds = svc.cluster.openSotw();
        cds.send({ node });
        ack(cds, await cds.next());
        const next = (s: SotwReader, names: string[]): Next => async (answer = 'ack') => {
          const r = await s.next();
          if (answer === 'ack') ack(s, r, names);
          else s.send({ version_info: '', response_nonce: r.nonce, resource_names: names, error_detail: { code: 3, message: 'no' } });
          return resourceNames(r).map(String);
        };
        edsNext = next(eds, ['a', 'b']);
        cdsNext = next(cds, []);
        edsBuffered = () => eds.buffered;
      } else {
        const eds = svc.endpoint.openDelta();
        eds.send({ node, resource_names_subscribe: ['a', 'b'] });
        eds.send({ response_nonce: (await eds.next()).nonce });
        const cds = svc.cluster.openDelta();
        cds.send({ node });
        cds.send({ response_nonce: (await cds.next()).nonce });
        const next = (s: DeltaReader): Next => async (answer = 'ack') => {
          const r = await s.next();
          s.send({ response_nonce: r.nonce, ...(answer === 'nack' ? { error_detail: { code: 3, message: 'no' } } : {}) });
          return r.resources.map((x) => x.name);
        };
        edsNext = next(eds);
        cdsNext = next(cds);
        edsBuffered = () => eds.buffered;
      }
      await eventually(() => expect(h.status.list()[0]?.types.map((t) => t.state)).toEqual(['SYNCED', 'SYNCED']));
      // Cluster a changes (its endpoints do not): Envoy warms the new Cluster until a ClusterLoadAssignment arrives
      // after it. The CLA waits for the CDS response's answer (HTTP/2 keeps no order across streams).
      h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('a', 5)] } } });
      await eventually(() => expect(h.status.list()[0]?.types[0]?.state).toBe('STALE'));
      await new Promise((r) => setTimeout(r, 100));
      expect(edsBuffered()).toBe(0);
      expect(await cdsNext('ack')).toContain('a');
      expect(await edsNext()).toEqual(['a']);
      // A NACK answers too (the proxy kept its Cluster; the CLA is harmless).
      h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b', 7)] } } });
      await new Promise((r) => setTimeout(r, 100));
      expect(edsBuffered()).toBe(0);
      expect(await cdsNext('nack')).toContain('b');
      expect(await edsNext()).toEqual(['b']);
      // An endpoint-only change goes at once.
      h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('b', '10.0.0.3')] } } });
      expect(await edsNext()).toEqual(['b']);
    });
  }

  for (const order of ['EDS stream first', 'CDS stream first'] as const) {
    it(`delta: a Cluster that changed while the node was away gets its unchanged CLA again on the EDS stream, after CDS is answered (${order})`, async () => {
      h = await startHarness(base());
      const node = envoyNode(`resume-${order.startsWith('EDS') ? 'e' : 'c'}`);
      const held = (r: { resources: { name: string; version: string }[] }) => Object.fromEntries(r.resources.map((x) => [x.name, x.version]));
      const first = services();
      const cds0 = first.cluster.openDelta();
      cds0.send({ node });
      const c0 = await cds0.next();
      cds0.send({ response_nonce: c0.nonce });
      const eds0 = first.endpoint.openDelta();
      eds0.send({ node, resource_names_subscribe: ['a', 'b'] });
      const e0 = await eds0.next();
      eds0.send({ response_nonce: e0.nonce });
      const clusters = held(c0);
      const endpoints = held(e0);
      cds0.call.cancel();
      eds0.call.cancel();
      await eventually(async () => expect(await gauge()).toContain('skein_xds_connected_proxies 0'));
      // Cluster a changes while the node is away; its endpoints do not.
      h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('a', 5)] } } });
      const svc = services();
      const cds = svc.cluster.openDelta();
      const eds = svc.endpoint.openDelta();
      const openEds = () => eds.send({ node, resource_names_subscribe: ['a', 'b'], initial_resource_versions: endpoints });
      if (order === 'EDS stream first') openEds();
      cds.send({ node, initial_resource_versions: clusters });
      const c = await cds.next();
      expect(c.resources.map((x) => x.name)).toEqual(['a']);
      if (order === 'CDS stream first') openEds();
      // Held while the CDS response is unanswered (HTTP/2 keeps no order across streams), then sent at the held version.
      await new Promise((r) => setTimeout(r, 100));
      // (The EDS stream's first request is answered at once, with nothing it does not hold.)
      while (eds.buffered > 0) expect((await eds.next()).resources).toEqual([]);
      cds.send({ response_nonce: c.nonce });
      const e = await eds.next();
      expect(e.resources.map((x) => [x.name, x.version])).toEqual([['a', endpoints.a]]);
    });
  }

  it('re-sends a changed Cluster\'s ClusterLoadAssignment at once when the node has no CDS stream here', async () => {
    h = await startHarness(base());
    const eds = services().endpoint.openSotw();
    eds.send({ node: envoyNode('eds-only'), resource_names: ['a'] });
    ack(eds, await eds.next(), ['a']);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('a', 5)] } } });
    expect(resourceNames(await eds.next())).toEqual(['a']);
  });

  it('points the EDS and RDS config sources of what CDS and LDS streams send at the per-type services (Envoy rejects ads: {} without ADS)', async () => {
    h = await startHarness({
      [SCOPE]: { ...base()[SCOPE], [TYPE_URL.listener]: { put: [resource(TYPE_URL.listener, buildVirtualOutbound('default') as unknown as Record<string, unknown>)] } },
    });
    const svc = services();
    type Cluster = { name: string; eds_cluster_config: { service_name: string; eds_config: Record<string, unknown> } };
    type Hcm = { stat_prefix: string; rds: { route_config_name: string; config_source: Record<string, unknown> }; http_filters: { name: string }[] };
    const hcmOf = (any: { type_url: string; value: Buffer }): Hcm => {
      const l = unpack<{ filter_chains: { filters: { typed_config: { type_url: string; value: Buffer } }[] }[] }>(any);
      return unpack<Hcm>(l.filter_chains[0]?.filters[0]?.typed_config as never);
    };
    const source = (apiType: string, cluster: string) => ({
      resource_api_version: 'V3',
      api_config_source: {
        api_type: apiType,
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: cluster } }],
        set_node_on_first_message_only: true,
      },
    });
    // SotW CDS, the bootstrap's xDS cluster named in node metadata: EDS over GRPC through it.
    const cds = svc.cluster.openSotw();
    cds.send({ node: { ...envoyNode('no-ads'), metadata: { fields: { XDS_CLUSTER: { stringValue: 'skein-xds' } } } } });
    const c = unpack<Cluster>((await cds.next()).resources[0] as never);
    expect(c.name).toBe('a');
    expect(c.eds_cluster_config.service_name).toBe('a');
    expect(c.eds_cluster_config.eds_config).toMatchObject(source('GRPC', 'skein-xds'));
    expect(c.eds_cluster_config.eds_config.config_source_specifier).toBe('api_config_source');
    // Delta LDS, no metadata: RDS over DELTA_GRPC through `xds_cluster`; the rest of the HCM as translated.
    const lds = svc.listener.openDelta();
    lds.send({ node: envoyNode('no-ads') });
    const hcm = hcmOf((await lds.next()).resources[0]?.resource as never);
    expect(hcm.rds.config_source).toMatchObject(source('DELTA_GRPC', 'xds_cluster'));
    expect(hcm.rds.route_config_name).toBe('outbound/default');
    expect(hcm.stat_prefix).toBe('outbound');
    expect(hcm.http_filters.map((f) => f.name)).toEqual(['envoy.filters.http.router']);
    // Fetch as a SotW stream; ADS keeps ads: {}.
    const fetched = unpack<Cluster>((await svc.cluster.fetch({ node: envoyNode('no-ads') })).resources[0] as never);
    expect(fetched.eds_cluster_config.eds_config).toMatchObject(source('GRPC', 'xds_cluster'));
    const ads = openSotw(h.client());
    ads.send({ node: envoyNode('with-ads'), type_url: TYPE_URL.cluster });
    const adsCluster = unpack<Cluster>((await ads.next()).resources[0] as never);
    expect(adsCluster.eds_cluster_config.eds_config).toMatchObject({ ads: {} });
    ads.send({ node: envoyNode('with-ads'), type_url: TYPE_URL.listener });
    const adsListener = await ads.next();
    expect(hcmOf(adsListener.resources[0] as never).rds.config_source).toMatchObject({ ads: {} });
  });

  it('keeps no removed cluster on a CDS-only stream (the LDS/RDS ACKs make-before-break waits for come elsewhere)', async () => {
    h = await startHarness(base());
    const svc = services();
    const cds = svc.cluster.openSotw();
    cds.send({ node: envoyNode('mbb') });
    ack(cds, await cds.next());
    // A publish replacing a by c: ADS with unACKed routes would keep a; a CDS-only stream sends the snapshot as is.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('c')], remove: ['a'] }, [TYPE_URL.endpoint]: { put: [endpoints('c', '10.0.0.4')], remove: ['a'] } } });
    expect(resourceNames(await cds.next())).toEqual(['b', 'c']);
  });

  it('answers Fetch with the current resources of its type and a version, and rejects a wrong type', async () => {
    h = await startHarness(base());
    const svc = services();
    const node = envoyNode('rest-client');
    const all = await svc.cluster.fetch({ node });
    expect(all.type_url).toBe(TYPE_URL.cluster);
    expect(resourceNames(all)).toEqual(['a', 'b']);
    // The version is the one a CDS stream sends for the same resources.
    const cds = svc.cluster.openSotw();
    cds.send({ node });
    expect(all.version_info).toBe((await cds.next()).version_info);
    const one = await svc.endpoint.fetch({ node, type_url: TYPE_URL.endpoint, resource_names: ['b'] });
    expect(resourceNames(one)).toEqual(['b']);
    expect(unpack<{ endpoints: { lb_endpoints: unknown[] }[] }>(one.resources[0] as never).endpoints[0]?.lb_endpoints).toHaveLength(1);
    expect(resourceNames(await svc.route.fetch({ node, resource_names: ['outbound/default', 'missing'] }))).toEqual(['outbound/default']);
    expect(resourceNames(await svc.listener.fetch({ node, resource_names: ['*'] }))).toEqual(['virtualOutbound']);
    // After a change, a new version.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('c')] } } });
    const after = await svc.cluster.fetch({ node });
    expect(resourceNames(after)).toEqual(['a', 'b', 'c']);
    expect(after.version_info).not.toBe(all.version_info);
    await expect(svc.listener.fetch({ node, type_url: TYPE_URL.cluster })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringContaining(TYPE_URL.listener),
    });
    await expect(svc.cluster.fetch({})).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });
});
