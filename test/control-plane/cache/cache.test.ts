// Tests the snapshot cache: debounce, incremental changes and versions, shared scope maps, scopes on demand, consistency.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Node__Output } from '../../../proto/index.ts';
import { encodeMessage, TYPE_URL } from '../../../proto/index.ts';
import type { Logger } from '../../../control-plane/log.ts';
import type { RegistryState, ServiceKey } from '../../../control-plane/registry/registry.ts';
import { checkSnapshot, contentVersion, createSnapshotCache, type ControlPlaneCache } from '../../../control-plane/cache/index.ts';
import type { Snapshot } from '../../../control-plane/cache/snapshot.ts';
import { assemble, translateService } from '../../../control-plane/translate/build.ts';
import { pod, registryState, service, slice } from '../translate/fixtures.ts';
import { FakeSource } from './fake-source.ts';


function recordingLog(): Logger & { errors: string[] } {
  const errors: string[] = [];
  return { errors, info() {}, warn() {}, debug() {}, debugEnabled: false, error: (msg, fields) => errors.push(`${msg} ${JSON.stringify(fields)}`) };
}

const svc = (ns: string, name: string, ip: string, port = { name: 'http', port: 80 }) => service(ns, name, { clusterIP: ip, ports: [port] });
const eps = (ns: string, name: string, ips: string[], ready = true) =>
  slice(ns, name, `${name}-a`, [{ name: 'http', port: 8080 }], ips.map((ip) => ({ ip, ready, pod: `${name}-${ip}` })));

function baseState(): RegistryState {
  return registryState(
    [svc('shop', 'web', '10.96.0.1'), svc('shop', 'api', '10.96.0.2'), svc('blog', 'db', '10.96.0.3', { name: 'tcp', port: 5432 })],
    [eps('shop', 'web', ['10.1.0.1', '10.1.0.2']), eps('shop', 'api', ['10.1.0.3'])],
    [pod('shop', 'web-10.1.0.1', 'web')],
  );
}

function withSlices(state: RegistryState, key: ServiceKey, list: ReturnType<typeof slice>[]): RegistryState {
  const slices = new Map(state.slices);
  slices.set(key, list);
  return { ...state, slices };
}

function withService(state: RegistryState, key: ServiceKey, s: ReturnType<typeof service> | undefined): RegistryState {
  const services = new Map(state.services);
  if (s) services.set(key, s);
  else services.delete(key);
  return { ...state, services };
}

const node = (fields: Partial<Node__Output>): Node__Output =>
  ({ id: '', cluster: '', metadata: null, locality: null, user_agent_name: '', client_features: [], ...fields }) as Node__Output;

/** Every resource's bytes per scope/type/name, for comparing snapshots with a from-scratch assembly. */
function bytesOf(snapshot: Snapshot): Map<string, string> {
  const out = new Map<string, string>();
  for (const [scope, types] of snapshot.scopes)
    for (const [t, map] of types) for (const [name, r] of map) out.set(`${scope} ${t} ${name}`, r.any.value.toString('hex'));
  return out;
}

function fromScratch(state: RegistryState, namespaces: string[] = []): Map<string, string> {
  const { scopes } = assemble([...state.services.keys()].map((k) => translateService(k, state)), namespaces);
  const out = new Map<string, string>();
  for (const [scope, types] of scopes)
    for (const [t, map] of types) for (const [name, msg] of map) out.set(`${scope} ${t} ${name}`, encodeMessage(t, msg).toString('hex'));
  return out;
}

let cache: ControlPlaneCache | undefined;
afterEach(() => {
  cache?.close();
  cache = undefined;
  vi.useRealTimers();
});

describe('snapshot cache', () => {
  it('publishes a consistent first snapshot with a scope per namespace and proxyless', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: recordingLog() });
    const snap = cache.current();
    expect(snap.serial).toBe(1);
    expect([...snap.scopes.keys()].sort()).toEqual(['envoy/blog', 'envoy/shop', 'proxyless']);
    expect(snap.changes.size).toBe(0);
    expect(checkSnapshot(snap)).toEqual([]);
    expect(bytesOf(snap)).toEqual(fromScratch(source.current));
  });

  it("stays consistent as a headless Service's named Pods come and go (a cluster and a virtual host each)", () => {
    const db = service('shop', 'db', { clusterIP: 'None', ports: [{ name: 'http', port: 8008 }] });
    const podsAt = (n: number) => slice('shop', 'db', 'db-1', [{ name: 'http', port: 8008 }], Array.from({ length: n }, (_, i) => ({ ip: `10.1.2.${i + 1}`, hostname: `db-${i}` })));
    const source = new FakeSource(withSlices(withService(baseState(), 'shop/db', db), 'shop/db', [podsAt(2)]));
    const log = recordingLog();
    cache = createSnapshotCache(source, { log });
    const clusters = (): string[] => [...(cache?.current().scopes.get('envoy/shop')?.get(TYPE_URL.cluster)?.keys() ?? [])].filter((n) => n.includes('.shop.') && n.includes('db')).sort();
    expect(clusters()).toEqual(['outbound|8008||db-0.db.shop.svc.cluster.local', 'outbound|8008||db-1.db.shop.svc.cluster.local', 'outbound|8008||db.shop.svc.cluster.local']);
    expect(checkSnapshot(cache.current())).toEqual([]);
    for (const n of [3, 1, 0]) {
      source.emit(withSlices(source.current, 'shop/db', [podsAt(n)]), ['shop/db']);
      cache.flush();
    }
    expect(log.errors).toEqual([]);
    expect(checkSnapshot(cache.current())).toEqual([]);
    expect(bytesOf(cache.current())).toEqual(fromScratch(source.current));
  });

  it('serves the last valid value of a Service annotation an edit broke, until the annotation is valid or gone', () => {
    const web = (lb?: string) => service('shop', 'web', { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80 }] }, lb ? { 'skein.dev/lb-policy': lb } : undefined);
    const source = new FakeSource(withService(baseState(), 'shop/web', web('round-robin')));
    cache = createSnapshotCache(source, { log: recordingLog() });
    const lbPolicy = (): unknown =>
      (cache?.current().scopes.get('envoy/shop')?.get(TYPE_URL.cluster)?.get('outbound|80||web.shop.svc.cluster.local')?.message as { lb_policy?: unknown }).lb_policy;
    expect(lbPolicy()).toBe('ROUND_ROBIN');
    for (const [lb, expected] of [['roundrobin', 'ROUND_ROBIN'], ['random', 'RANDOM'], ['rnd', 'RANDOM'], [undefined, 'LEAST_REQUEST']] as const) {
      source.emit(withService(source.current, 'shop/web', web(lb)), ['shop/web']);
      cache.flush();
      expect([lb, lbPolicy()]).toEqual([lb, expected]);
    }
  });

  it('turns an ExternalName into an alias when the Service it names appears, consistently (every route has its cluster)', () => {
    const alias = service('shop', 'alias', { type: 'ExternalName', externalName: 'cart.shop.svc.cluster.local', ports: [{ name: 'http', port: 80 }] });
    const source = new FakeSource(withService(baseState(), 'shop/alias', alias));
    cache = createSnapshotCache(source, { log: recordingLog() });
    type Table = { virtual_hosts?: { name: string; routes: { route?: { cluster?: string } }[] }[] };
    const routedTo = (): string | undefined =>
      (cache?.current().scopes.get('envoy/shop')?.get(TYPE_URL.route)?.get('outbound/shop')?.message as Table | undefined)?.virtual_hosts
        ?.find((v) => v.name === 'alias.shop.svc.cluster.local:80')?.routes[0]?.route?.cluster;
    expect(routedTo()).toBe('outbound|80||alias.shop.svc.cluster.local'); // a DNS cluster while cart does not exist
    source.emit(withService(source.current, 'shop/cart', svc('shop', 'cart', '10.96.0.9')), ['shop/cart']);
    cache.flush();
    expect(routedTo()).toBe('outbound|80||cart.shop.svc.cluster.local');
    expect(checkSnapshot(cache.current())).toEqual([]);
    expect(bytesOf(cache.current())).toEqual(fromScratch(source.current));
  });

  it('routes an alias as its target serves itself, also the target\'s last valid routes when an edit broke them', () => {
    const split = (routes: string) => service('shop', 'cart', { clusterIP: '10.96.0.9', ports: [{ name: 'http', port: 80 }] }, { 'skein.dev/routes': routes });
    const good = '[{"prefix": "/", "weighted": [{"service": "cart", "port": 80, "weight": 9}, {"service": "web", "port": 80, "weight": 1}]}]';
    const alias = service('shop', 'alias', { type: 'ExternalName', externalName: 'cart.shop.svc.cluster.local' });
    const source = new FakeSource(withService(withService(baseState(), 'shop/cart', split(good)), 'shop/alias', alias));
    cache = createSnapshotCache(source, { log: recordingLog() });
    type Table = { virtual_hosts?: { name: string; routes: { route?: { weighted_clusters?: { clusters: { name: string }[] } } }[] }[] };
    const targetsOf = (host: string): string[] | undefined =>
      (cache?.current().scopes.get('envoy/shop')?.get(TYPE_URL.route)?.get('outbound/shop')?.message as Table | undefined)?.virtual_hosts
        ?.find((v) => v.name === host)?.routes[0]?.route?.weighted_clusters?.clusters.map((c) => c.name);
    const both = ['outbound|80||cart.shop.svc.cluster.local', 'outbound|80||web.shop.svc.cluster.local'];
    expect(targetsOf('alias.shop.svc.cluster.local:80')).toEqual(both);
    source.emit(withService(source.current, 'shop/cart', split('[{"prefix": "/", "weighted": [{"service": "cart", "port": "x"}]}]')), ['shop/cart']);
    cache.flush();
    expect(targetsOf('cart.shop.svc.cluster.local:80')).toEqual(both); // the target keeps its split...
    expect(targetsOf('alias.shop.svc.cluster.local:80')).toEqual(both); // ...and so does its alias
    expect(checkSnapshot(cache.current())).toEqual([]);
  });

  it('shares CDS and EDS maps between scopes and versions resources by content hash', () => {
    cache = createSnapshotCache(new FakeSource(baseState()), { log: recordingLog() });
    const snap = cache.current();
    const shop = snap.scopes.get('envoy/shop');
    const blog = snap.scopes.get('envoy/blog');
    const proxyless = snap.scopes.get('proxyless');
    expect(shop?.get(TYPE_URL.cluster)).toBe(blog?.get(TYPE_URL.cluster));
    expect(shop?.get(TYPE_URL.endpoint)).toBe(blog?.get(TYPE_URL.endpoint));
    expect(proxyless?.get(TYPE_URL.endpoint)).toBe(shop?.get(TYPE_URL.endpoint));
    expect(proxyless?.get(TYPE_URL.cluster)).not.toBe(shop?.get(TYPE_URL.cluster));
    // TCP listeners are the same objects in every namespace's LDS.
    expect(shop?.get(TYPE_URL.listener)?.get('10.96.0.3_5432')).toBe(blog?.get(TYPE_URL.listener)?.get('10.96.0.3_5432'));
    const cla = shop?.get(TYPE_URL.endpoint)?.get('outbound|80||web.shop.svc.cluster.local');
    expect(cla?.version).toBe(contentVersion(cla?.any.value ?? Buffer.alloc(0)));
    expect(cla?.any.type_url).toBe(TYPE_URL.endpoint);
    expect(cla?.message).toMatchObject({ cluster_name: 'outbound|80||web.shop.svc.cluster.local' });
    // A restart gives the same versions.
    const again = createSnapshotCache(new FakeSource(baseState()), { log: recordingLog() });
    expect(again.current().scopes.get('envoy/shop')?.get(TYPE_URL.endpoint)?.get('outbound|80||web.shop.svc.cluster.local')?.version).toBe(cla?.version);
    again.close();
  });

  it('coalesces a burst of changes into one publish after the trailing debounce window', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { debounceMs: 100, leadingEdge: false, log: recordingLog() });
    const published: Snapshot[] = [];
    cache.subscribe((s) => published.push(s));
    let state = source.current;
    state = withSlices(state, 'shop/web', [eps('shop', 'web', ['10.1.0.1'])]);
    source.emit(state, ['shop/web']);
    const firstAt = performance.now();
    vi.advanceTimersByTime(40);
    state = withSlices(state, 'shop/api', [eps('shop', 'api', ['10.1.0.3', '10.1.0.4'])]);
    source.emit(state, ['shop/api']);
    vi.advanceTimersByTime(50);
    expect(published).toHaveLength(0);
    vi.advanceTimersByTime(10);
    expect(published).toHaveLength(1);
    expect(published[0]?.serial).toBe(2);
    expect(published[0]?.changedAt).toBe(firstAt);
    expect([...(published[0]?.changes.get('envoy/shop')?.get(TYPE_URL.endpoint) ?? [])].sort()).toEqual([
      'outbound|80||api.shop.svc.cluster.local',
      'outbound|80||web.shop.svc.cluster.local',
    ]);
    expect(cache.lastPublish()).toMatchObject({ serial: 2, changedAt: firstAt, translated: 2 });
  });

  it('publishes a change after a quiet window at once (leading edge) and coalesces the changes that follow', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { debounceMs: 100, log: recordingLog() });
    const published: Snapshot[] = [];
    cache.subscribe((s) => published.push(s));
    vi.advanceTimersByTime(500);
    let state = withSlices(source.current, 'shop/web', [eps('shop', 'web', ['10.1.0.1'])]);
    const firstAt = performance.now();
    source.emit(state, ['shop/web']);
    // Two changes in the same tick still make one publish.
    state = withSlices(state, 'shop/api', [eps('shop', 'api', ['10.1.0.9'])]);
    source.emit(state, ['shop/api']);
    vi.advanceTimersByTime(0);
    expect(published).toHaveLength(1);
    expect(published[0]?.changedAt).toBe(firstAt);
    expect([...(published[0]?.changes.get('envoy/shop')?.get(TYPE_URL.endpoint) ?? [])].sort()).toEqual([
      'outbound|80||api.shop.svc.cluster.local',
      'outbound|80||web.shop.svc.cluster.local',
    ]);
    // A burst right after: held until the window since the last publish has passed, then published once.
    vi.advanceTimersByTime(30);
    state = withSlices(state, 'shop/web', [eps('shop', 'web', ['10.1.0.2'])]);
    source.emit(state, ['shop/web']);
    vi.advanceTimersByTime(30);
    state = withSlices(state, 'shop/api', [eps('shop', 'api', ['10.1.0.4'])]);
    source.emit(state, ['shop/api']);
    vi.advanceTimersByTime(39);
    expect(published).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(published).toHaveLength(2);
    expect([...(published[1]?.changes.get('envoy/shop')?.get(TYPE_URL.endpoint) ?? [])]).toHaveLength(2);
  });

  it('starts the trailing debounce window when the source noticed the change, not when it finished reading it', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { debounceMs: 100, leadingEdge: false, log: recordingLog() });
    const published: Snapshot[] = [];
    cache.subscribe((s) => published.push(s));
    vi.advanceTimersByTime(500);
    const noticed = performance.now();
    vi.advanceTimersByTime(60); // the file took 60 ms to read and parse
    source.emit(withSlices(source.current, 'shop/web', [eps('shop', 'web', ['10.1.0.1'])]), ['shop/web'], noticed);
    vi.advanceTimersByTime(39);
    expect(published).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(published).toHaveLength(1);
    expect(published[0]?.changedAt).toBe(noticed);
  });

  it('publishes at most every window and keeps publishing under a continuous burst', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { debounceMs: 100, maxDelayMs: 1000, log: recordingLog() });
    const published: number[] = [];
    cache.subscribe(() => published.push(performance.now()));
    let state = source.current;
    const start = performance.now();
    for (let i = 0; i < 200; i++) {
      state = withSlices(state, 'shop/web', [eps('shop', 'web', [`10.1.1.${i % 250}`])]);
      source.emit(state, ['shop/web']);
      vi.advanceTimersByTime(10);
    }
    vi.advanceTimersByTime(200);
    expect(published.length).toBeGreaterThanOrEqual(15);
    expect(published[0]).toBeLessThanOrEqual(start + 1000);
    for (let i = 1; i < published.length; i++) expect((published[i] ?? 0) - (published[i - 1] ?? 0)).toBeGreaterThanOrEqual(100);
  });

  it('lists only the names that changed, and keeps unchanged resources as the same objects', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: recordingLog() });
    const before = cache.current();
    source.emit(withSlices(source.current, 'shop/web', [eps('shop', 'web', ['10.1.0.1', '10.1.0.2'], false)]), ['shop/web']);
    cache.flush();
    const after = cache.current();
    expect(after.serial).toBe(2);
    for (const scope of ['envoy/shop', 'envoy/blog', 'proxyless']) {
      const c = after.changes.get(scope);
      expect([...(c?.get(TYPE_URL.endpoint) ?? [])], scope).toEqual(['outbound|80||web.shop.svc.cluster.local']);
      expect(c?.get(TYPE_URL.cluster)?.size).toBe(0);
      expect(c?.get(TYPE_URL.listener)?.size).toBe(0);
      expect(c?.get(TYPE_URL.route)?.size).toBe(0);
    }
    const eds = (s: Snapshot) => s.scopes.get('envoy/shop')?.get(TYPE_URL.endpoint);
    expect(eds(after)?.get('outbound|80||api.shop.svc.cluster.local')).toBe(eds(before)?.get('outbound|80||api.shop.svc.cluster.local'));
    expect(eds(after)?.get('outbound|80||web.shop.svc.cluster.local')?.version).not.toBe(eds(before)?.get('outbound|80||web.shop.svc.cluster.local')?.version);
    // Maps that did not change are the very same objects.
    const shopAfter = after.scopes.get('envoy/shop');
    const shopBefore = before.scopes.get('envoy/shop');
    expect(shopAfter?.get(TYPE_URL.cluster)).toBe(shopBefore?.get(TYPE_URL.cluster));
    expect(shopAfter?.get(TYPE_URL.listener)).toBe(shopBefore?.get(TYPE_URL.listener));
    expect(shopAfter?.get(TYPE_URL.route)).toBe(shopBefore?.get(TYPE_URL.route));
    expect(bytesOf(after)).toEqual(fromScratch(source.current));
  });

  it('keeps versions for equal content (a re-created object with the same fields)', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: recordingLog() });
    const before = cache.current();
    source.emit(withService(withSlices(source.current, 'shop/web', [eps('shop', 'web', ['10.1.0.2', '10.1.0.1'])]), 'shop/web', svc('shop', 'web', '10.96.0.1')), ['shop/web']);
    cache.flush();
    const after = cache.current();
    expect(after.serial).toBe(2);
    for (const [, byType] of after.changes) for (const [, names] of byType) expect(names.size).toBe(0);
    expect(after.scopes.get('envoy/shop')).toBe(before.scopes.get('envoy/shop'));
    expect(after.scopes.get('proxyless')).toBe(before.scopes.get('proxyless'));
  });

  it('follows Service additions, changes and removals across every resource kind', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: recordingLog() });
    let state = withService(source.current, 'blog/db', undefined);
    state = withService(state, 'news/feed', service('news', 'feed', { clusterIP: '10.96.0.9', ports: [{ name: 'http', port: 80 }, { name: 'tcp', port: 9000 }] }));
    state = withService(state, 'shop/api', service('shop', 'api', { clusterIP: '10.96.0.2', ports: [{ name: 'http', port: 8080 }] }));
    source.emit(state, ['blog/db', 'news/feed', 'shop/api']);
    cache.flush();
    const snap = cache.current();
    const shop = snap.changes.get('envoy/shop');
    expect([...(shop?.get(TYPE_URL.cluster) ?? [])].sort()).toEqual([
      'outbound|5432||db.blog.svc.cluster.local',
      'outbound|8080||api.shop.svc.cluster.local',
      'outbound|80||api.shop.svc.cluster.local',
      'outbound|80||feed.news.svc.cluster.local',
      'outbound|9000||feed.news.svc.cluster.local',
    ]);
    expect([...(shop?.get(TYPE_URL.listener) ?? [])].sort()).toEqual(['10.96.0.3_5432', '10.96.0.9_9000']);
    expect([...(shop?.get(TYPE_URL.route) ?? [])]).toEqual(['outbound/shop']);
    expect(snap.changes.has('envoy/news')).toBe(false); // new scope: everything in it is new
    expect(snap.scopes.has('envoy/blog')).toBe(false); // its last Service went, and no proxy there holds it
    expect(checkSnapshot(snap)).toEqual([]);
    expect(bytesOf(snap)).toEqual(fromScratch(state));
  });

  it('builds the scope of a namespace with no Services on first use', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: recordingLog() });
    const seen: Snapshot[] = [];
    cache.subscribe((s) => seen.push(s));
    const scope = cache.scopeOf(node({ metadata: { fields: { NAMESPACE: { stringValue: 'fresh', kind: 'stringValue' } } } as never }));
    expect(scope).toBe('envoy/fresh');
    const snap = cache.current();
    expect(snap.serial).toBe(2);
    expect(seen).toEqual([snap]);
    expect(snap.changes.has('envoy/fresh')).toBe(false);
    expect([...(snap.changes.get('envoy/shop')?.values() ?? [])].every((s) => s.size === 0)).toBe(true);
    const fresh = snap.scopes.get('envoy/fresh');
    expect([...(fresh?.get(TYPE_URL.route)?.keys() ?? [])]).toEqual(['outbound/fresh']);
    expect(fresh?.get(TYPE_URL.cluster)).toBe(snap.scopes.get('envoy/shop')?.get(TYPE_URL.cluster));
    expect(checkSnapshot(snap)).toEqual([]);
    // Asking again changes nothing; Istio-style ids and gRPC user agents map as the contract says.
    expect(cache.scopeOf(node({ id: 'sidecar~10.1.0.9~web-1.fresh~fresh.svc.cluster.local' }))).toBe('envoy/fresh');
    expect(cache.current().serial).toBe(2);
    expect(cache.scopeOf(node({ user_agent_name: 'gRPC Node', id: 'x' }))).toBe('proxyless');
    expect(cache.scopeOf(node({ user_agent_name: 'envoy', id: 'whatever' }))).toBe('envoy/default');
    expect(cache.current().scopes.has('envoy/default')).toBe(true);
    // The new scope keeps following changes.
    source.emit(withSlices(source.current, 'shop/api', [eps('shop', 'api', ['10.1.0.8'])]), ['shop/api']);
    cache.flush();
    expect([...(cache.current().changes.get('envoy/fresh')?.get(TYPE_URL.endpoint) ?? [])]).toEqual(['outbound|80||api.shop.svc.cluster.local']);
  });

  it('keeps the scope of a namespace while it has Services or a proxy, and drops it after both are gone', () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { log: recordingLog() });
    const inBlog = node({ id: 'sidecar~10.1.0.7~db-0.blog~blog.svc.cluster.local' });
    // Two proxies in blog, one in a namespace that never had a Service (a made-up one costs its scope only while connected).
    expect(cache.scopeOf(inBlog)).toBe('envoy/blog');
    expect(cache.scopeOf(inBlog)).toBe('envoy/blog');
    expect(cache.scopeOf(node({ id: 'sidecar~10.1.0.8~x.nowhere~nowhere.svc.cluster.local' }))).toBe('envoy/nowhere');
    const scopes = () => [...cache!.current().scopes.keys()].sort();
    expect(scopes()).toEqual(['envoy/blog', 'envoy/nowhere', 'envoy/shop', 'proxyless']);
    // blog's last Service goes while its proxies are connected: the scope stays, without the Service's resources.
    source.emit(withService(source.current, 'blog/db', undefined), ['blog/db']);
    cache.flush();
    expect(scopes()).toEqual(['envoy/blog', 'envoy/nowhere', 'envoy/shop', 'proxyless']);
    expect(cache.current().scopes.get('envoy/blog')?.get(TYPE_URL.cluster)?.has('outbound|5432||db.blog.svc.cluster.local')).toBe(false);
    cache.releaseScope?.('envoy/blog');
    cache.flush();
    expect(scopes()).toContain('envoy/blog'); // one proxy is still there
    cache.releaseScope?.('envoy/blog');
    cache.releaseScope?.('envoy/nowhere');
    cache.releaseScope?.('envoy/nowhere'); // a stray release changes nothing
    cache.releaseScope?.('proxyless');
    cache.flush();
    expect(scopes()).toEqual(['envoy/shop', 'proxyless']);
    expect(checkSnapshot(cache.current())).toEqual([]);
    expect(bytesOf(cache.current())).toEqual(fromScratch(source.current));
    // A namespace with Services keeps its scope when its proxies leave; it goes with its last Service.
    cache.scopeOf(node({ id: 'sidecar~10.1.0.9~web-1.shop~shop.svc.cluster.local' }));
    cache.releaseScope?.('envoy/shop');
    cache.flush();
    expect(scopes()).toEqual(['envoy/shop', 'proxyless']);
    source.emit(withService(withService(source.current, 'shop/web', undefined), 'shop/api', undefined), ['shop/web', 'shop/api']);
    cache.flush();
    expect(scopes()).toEqual(['proxyless']);
    expect(cache.translationProblems().size).toBe(0);
  });

  it('drops a released scope on the timer too (no registry change needed)', async () => {
    const source = new FakeSource(baseState());
    cache = createSnapshotCache(source, { debounceMs: 0, log: recordingLog() });
    cache.scopeOf(node({ id: 'sidecar~10.1.0.8~x.gone~gone.svc.cluster.local' }));
    const serial = cache.current().serial;
    cache.releaseScope?.('envoy/gone');
    for (let i = 0; cache.current().serial === serial; i++) {
      expect(i, 'no publish after the release').toBeLessThan(200);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(cache.current().scopes.has('envoy/gone')).toBe(false);
  });

  it('retranslates Services whose routes name a changed Service, and reports translation problems', () => {
    const routes = '- prefix: /api\n  cluster: api:80';
    const state0 = withService(baseState(), 'shop/web', service('shop', 'web', { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80 }] }, { 'skein.dev/routes': routes }));
    const source = new FakeSource(state0);
    cache = createSnapshotCache(source, { log: recordingLog() });
    expect(cache.translationProblems().size).toBe(0);
    source.emit(withService(source.current, 'shop/api', undefined), ['shop/api']);
    cache.flush();
    const snap = cache.current();
    expect(snap.serial).toBe(2);
    expect(checkSnapshot(snap)).toEqual([]);
    expect(cache.translationProblems().get('shop/web')?.map((p) => p.code)).toEqual(['SKEIN_TRANSLATE_ROUTE_TARGET']);
    expect(bytesOf(snap)).toEqual(fromScratch(source.current));
    source.emit(withService(source.current, 'shop/api', svc('shop', 'api', '10.96.0.2')), ['shop/api']);
    cache.flush();
    expect(cache.translationProblems().size).toBe(0);
    expect(bytesOf(cache.current())).toEqual(fromScratch(source.current));
  });

  it('refuses to publish an inconsistent snapshot and keeps the previous one', () => {
    const source = new FakeSource(baseState());
    let broken = false;
    const log = recordingLog();
    cache = createSnapshotCache(source, {
      log,
      translate: (key, state, options) => {
        const res = translateService(key, state, options);
        return broken && key === 'shop/web' ? { ...res, endpoints: [] } : res;
      },
    });
    const before = cache.current();
    broken = true;
    source.emit(withSlices(source.current, 'shop/web', [eps('shop', 'web', ['10.1.0.7'])]), ['shop/web']);
    cache.flush();
    expect(cache.current()).toBe(before);
    expect(log.errors.join('\n')).toContain('EDS cluster outbound|80||web.shop.svc.cluster.local has no ClusterLoadAssignment');
    broken = false;
    source.emit(withSlices(source.current, 'shop/api', [eps('shop', 'api', ['10.1.0.8'])]), ['shop/api']);
    cache.flush();
    expect(cache.current().serial).toBe(2);
    expect(bytesOf(cache.current())).toEqual(fromScratch(source.current));
  });

  it('finds dangling references in a whole snapshot', () => {
    cache = createSnapshotCache(new FakeSource(baseState()), { log: recordingLog() });
    const snap = cache.current();
    const shop = snap.scopes.get('envoy/shop');
    const cds = new Map(shop?.get(TYPE_URL.cluster));
    cds.delete('outbound|80||api.shop.svc.cluster.local');
    const eds = new Map(shop?.get(TYPE_URL.endpoint));
    eds.delete('outbound|80||web.shop.svc.cluster.local');
    const broken: Snapshot = {
      ...snap,
      scopes: new Map([['envoy/shop', new Map([...(shop ?? []), [TYPE_URL.cluster, cds], [TYPE_URL.endpoint, eds], [TYPE_URL.route, new Map()]])]]),
    };
    const problems = checkSnapshot(broken);
    expect(problems).toEqual(
      expect.arrayContaining([
        'envoy/shop: EDS cluster outbound|80||web.shop.svc.cluster.local has no ClusterLoadAssignment',
        'envoy/shop: listener virtualOutbound names missing route table outbound/shop',
      ]),
    );
  });
});
