// The cache's VHDS form of each envoy scope: one VirtualHost resource per vhost, changes named per resource, shared bytes.
import { afterEach, describe, expect, it } from 'vitest';
import { type RouteConfiguration__Output, TYPE_URL, unpack, type VirtualHost__Output } from '../../../proto/index.ts';
import type { Logger } from '../../../control-plane/log.ts';
import type { RegistryState, ServiceKey } from '../../../control-plane/registry/registry.ts';
import { checkSnapshot, createSnapshotCache, type ControlPlaneCache } from '../../../control-plane/cache/index.ts';
import type { Snapshot } from '../../../control-plane/cache/snapshot.ts';
import { registryState, service, slice } from '../translate/fixtures.ts';
import { FakeSource } from './fake-source.ts';

const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {}, debugEnabled: false };
const svc = (ns: string, name: string, ip: string, annotations?: Record<string, string>) =>
  service(ns, name, { clusterIP: ip, ports: [{ name: 'http', port: 80 }] }, annotations);
const eps = (ns: string, name: string, ips: string[]) =>
  slice(ns, name, `${name}-a`, [{ name: 'http', port: 8080 }], ips.map((ip) => ({ ip, ready: true, pod: `${name}-${ip}` })));

function baseState(): RegistryState {
  return registryState(
    [svc('shop', 'web', '10.96.0.1'), svc('shop', 'api', '10.96.0.2'), svc('blog', 'posts', '10.96.0.3')],
    [eps('shop', 'web', ['10.1.0.1']), eps('shop', 'api', ['10.1.0.2']), eps('blog', 'posts', ['10.1.0.3'])],
    [],
  );
}

function withService(state: RegistryState, key: ServiceKey, s: ReturnType<typeof service> | undefined): RegistryState {
  const services = new Map(state.services);
  if (s) services.set(key, s);
  else services.delete(key);
  return { ...state, services };
}

const vhosts = (snap: Snapshot, scope: string) => snap.vhdsScopes?.get(scope)?.get(TYPE_URL.virtualHost) ?? new Map();
const vhChanges = (snap: Snapshot, scope: string) => [...(snap.changes.get(scope)?.get(TYPE_URL.virtualHost) ?? [])].sort();

let cache: ControlPlaneCache | undefined;
afterEach(() => {
  cache?.close();
  cache = undefined;
});

describe('snapshot cache: VHDS form of envoy scopes', () => {
  it('holds one VirtualHost per vhost of outbound/<ns>, named <table>/<vhost name>, with the bytes of the full table', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: quiet });
    const snap = cache.current();
    for (const ns of ['shop', 'blog']) {
      const scope = `envoy/${ns}`;
      const form = snap.vhdsScopes?.get(scope);
      const plain = snap.scopes.get(scope);
      // CDS, EDS and LDS are the very maps other clients get.
      for (const t of [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener]) expect(form?.get(t)).toBe(plain?.get(t));
      expect(plain?.has(TYPE_URL.virtualHost)).toBe(false);
      const table = unpack<RouteConfiguration__Output>(form?.get(TYPE_URL.route)?.get(`outbound/${ns}`)?.any as never);
      expect(table.virtual_hosts).toEqual([]);
      expect(table.vhds?.config_source).toMatchObject({ ads: {}, resource_api_version: 'V3' });
      const full = unpack<RouteConfiguration__Output>(plain?.get(TYPE_URL.route)?.get(`outbound/${ns}`)?.any as never);
      const map = vhosts(snap, scope);
      expect([...map.keys()]).toEqual(full.virtual_hosts.map((v) => `outbound/${ns}/${v.name}`));
      for (const v of full.virtual_hosts) {
        const r = map.get(`outbound/${ns}/${v.name}`);
        expect(r?.any.type_url).toBe(TYPE_URL.virtualHost);
        expect(unpack<VirtualHost__Output>(r?.any as never)).toEqual(v);
      }
    }
    // A namespace's own Services have their short names; other namespaces' tables do not.
    const webInShop = unpack<VirtualHost__Output>(vhosts(snap, 'envoy/shop').get('outbound/shop/web.shop.svc.cluster.local:80')?.any as never);
    const webInBlog = unpack<VirtualHost__Output>(vhosts(snap, 'envoy/blog').get('outbound/blog/web.shop.svc.cluster.local:80')?.any as never);
    expect(webInShop.domains).toContain('web');
    expect(webInBlog.domains).not.toContain('web');
    expect(snap.vhdsScopes?.has('proxyless')).toBe(false);
    expect(checkSnapshot(snap)).toEqual([]);
    // The check walks the VHDS forms too: a virtual host naming a cluster nobody publishes is reported.
    const shop = snap.vhdsScopes?.get('envoy/shop');
    const broken = new Map(shop);
    broken.set(TYPE_URL.cluster, new Map());
    expect(checkSnapshot({ ...snap, scopes: new Map(), vhdsScopes: new Map([['envoy/shop', broken]]) })).toContain(
      'envoy/shop: virtual host outbound/shop/web.shop.svc.cluster.local:80 names missing cluster outbound|80||web.shop.svc.cluster.local',
    );
  });

  it('a Service added or removed changes its VirtualHost only, in every namespace; unchanged ones stay the same objects', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: quiet });
    const before = cache.current();
    source.moveTo(withService(source.current, 'shop/orders' as ServiceKey, svc('shop', 'orders', '10.96.0.9')));
    cache.flush();
    const added = cache.current();
    expect(vhChanges(added, 'envoy/shop')).toEqual(['outbound/shop/orders.shop.svc.cluster.local:80']);
    expect(vhChanges(added, 'envoy/blog')).toEqual(['outbound/blog/orders.shop.svc.cluster.local:80']);
    for (const [name, r] of vhosts(before, 'envoy/shop')) expect(vhosts(added, 'envoy/shop').get(name), name).toBe(r);
    // The VHDS route table does not change; the full one does.
    expect(added.vhdsScopes?.get('envoy/shop')?.get(TYPE_URL.route)).toBe(before.vhdsScopes?.get('envoy/shop')?.get(TYPE_URL.route));
    expect(added.scopes.get('envoy/shop')?.get(TYPE_URL.route)).not.toBe(before.scopes.get('envoy/shop')?.get(TYPE_URL.route));

    source.moveTo(withService(source.current, 'shop/orders' as ServiceKey, undefined));
    cache.flush();
    const removed = cache.current();
    expect(vhChanges(removed, 'envoy/shop')).toEqual(['outbound/shop/orders.shop.svc.cluster.local:80']);
    expect(vhosts(removed, 'envoy/shop').has('outbound/shop/orders.shop.svc.cluster.local:80')).toBe(false);
    expect([...vhosts(removed, 'envoy/shop').keys()]).toEqual([...vhosts(before, 'envoy/shop').keys()]);
  });

  it("a change to one Service's routes touches its own VirtualHost only (same name, new version)", () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: quiet });
    const before = cache.current();
    const name = 'outbound/blog/api.shop.svc.cluster.local:80';
    source.moveTo(withService(source.current, 'shop/api' as ServiceKey, svc('shop', 'api', '10.96.0.2', { 'skein.dev/timeout': '3s' })));
    cache.flush();
    const after = cache.current();
    expect(vhChanges(after, 'envoy/blog')).toEqual([name]);
    expect(vhChanges(after, 'envoy/shop')).toEqual(['outbound/shop/api.shop.svc.cluster.local:80']);
    expect(vhosts(after, 'envoy/blog').get(name)?.version).not.toBe(vhosts(before, 'envoy/blog').get(name)?.version);
    expect([...vhosts(after, 'envoy/blog').keys()]).toEqual([...vhosts(before, 'envoy/blog').keys()]);
  });

  it('an endpoint change leaves the VirtualHosts (and the VHDS form of the table) untouched', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: quiet });
    const before = cache.current();
    const slices = new Map(source.current.slices);
    slices.set('shop/web' as ServiceKey, [eps('shop', 'web', ['10.1.0.1', '10.1.0.7'])]);
    source.moveTo({ ...source.current, slices });
    cache.flush();
    const after = cache.current();
    expect(after.serial).toBe(before.serial + 1);
    expect(vhChanges(after, 'envoy/shop')).toEqual([]);
    expect(after.vhdsScopes?.get('envoy/shop')?.get(TYPE_URL.virtualHost)).toBe(before.vhdsScopes?.get('envoy/shop')?.get(TYPE_URL.virtualHost));
  });
});
