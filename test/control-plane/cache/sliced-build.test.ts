// A large build runs in slices: the event loop keeps turning, one snapshot per build, later changes after it, in order.
import { afterEach, describe, expect, it } from 'vitest';
import type { Node__Output } from '../../../proto/index.ts';
import { encodeMessage, TYPE_URL } from '../../../proto/index.ts';
import type { Logger } from '../../../control-plane/log.ts';
import type { RegistryState, ServiceKey } from '../../../control-plane/registry/registry.ts';
import { createSnapshotCache, type ControlPlaneCache } from '../../../control-plane/cache/index.ts';
import type { Snapshot } from '../../../control-plane/cache/snapshot.ts';
import { assemble, translateService } from '../../../control-plane/translate/build.ts';
import { registryState, service, slice } from '../translate/fixtures.ts';
import { FakeSource } from './fake-source.ts';

const quiet: Logger & { errors: string[] } = { errors: [], info() {}, warn() {}, debug() {}, debugEnabled: false, error() {} };

function mesh(count: number): RegistryState {
  const services = [];
  const slices = [];
  for (let i = 0; i < count; i++) {
    const ns = `ns-${i % 4}`;
    services.push(service(ns, `svc-${i}`, { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ name: 'http', port: 80 }] }));
    slices.push(slice(ns, `svc-${i}`, `svc-${i}-a`, [{ name: 'http', port: 8080 }], [{ ip: `10.1.${i >> 8}.${i & 255}`, ready: true }]));
  }
  return registryState(services, slices, []);
}

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

const sidecarOf = (ns: string): Node__Output =>
  ({ id: `sidecar~10.0.0.1~p.${ns}~${ns}.svc.cluster.local`, cluster: '', metadata: null, locality: null, user_agent_name: 'envoy', client_features: [] }) as Node__Output;

let cache: ControlPlaneCache | undefined;
afterEach(() => {
  cache?.close();
  cache = undefined;
});

describe('snapshot cache: a large build in slices', () => {
  it('lets timers run between slices, publishes once, then applies a change that came meanwhile', async () => {
    const small = mesh(4);
    const source = new FakeSource(small);
    // Slices of 0 ms: a turn at every pause point (each Service translated), so the test counts turns, not time.
    cache = createSnapshotCache(source, { debounceMs: 0, sliceMs: 0, log: quiet });
    const published: Snapshot[] = [];
    cache.subscribe((s) => published.push(s));

    const big = mesh(400);
    source.emit(big, [...big.services.keys()].filter((k) => !small.services.has(k)));
    let turns = 0;
    while (!cache.building()) {
      turns++;
      expect(turns, 'the build never started in slices').toBeLessThan(1000);
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    // Mid-build: other callbacks run between slices (one slice per turn at 0 ms: 400 Services take 400 turns),
    // nothing is half-published, and a newer change arrives.
    let fired = 0;
    for (let i = 0; i < 50 && cache.building(); i++) {
      await new Promise((resolve) => setImmediate(resolve));
      fired++;
    }
    expect(fired).toBe(50);
    expect(cache.building()).toBe(true);
    expect(published).toHaveLength(0);
    expect(cache.current().serial).toBe(1);
    // A proxy of a namespace with no Services connects mid-build: its scope is published at once (on the old build).
    expect(cache.scopeOf(sidecarOf('late'))).toBe('envoy/late');
    expect(published.map((s) => s.serial)).toEqual([2]);
    const services = new Map(big.services);
    services.delete('ns-1/svc-1' as ServiceKey);
    const later: RegistryState = { ...big, services };
    source.emit(later, ['ns-1/svc-1' as ServiceKey]);

    await cache.whenBuilt();
    expect(published.map((s) => s.serial)).toEqual([2, 3]);
    const built = published[1] as Snapshot;
    expect(built.scopes.get('envoy/ns-3')?.get(TYPE_URL.cluster)?.has('outbound|80||svc-399.ns-3.svc.cluster.local')).toBe(true);
    expect(built.scopes.get('envoy/ns-1')?.get(TYPE_URL.cluster)?.has('outbound|80||svc-1.ns-1.svc.cluster.local')).toBe(true);
    // The scope published mid-build is in the built snapshot too, with the new Services.
    expect(built.scopes.get('envoy/late')?.get(TYPE_URL.cluster)?.has('outbound|80||svc-399.ns-3.svc.cluster.local')).toBe(true);
    expect(bytesOf(built)).toEqual(fromScratch(big, ['late']));

    // The change that came during the build follows in its own snapshot.
    for (let i = 0; published.length < 3; i++) {
      expect(i, 'the change made during the build was not published').toBeLessThan(1000);
      await new Promise((resolve) => setTimeout(resolve, 1));
      await cache.whenBuilt();
    }
    const last = published[2] as Snapshot;
    expect(last.serial).toBe(4);
    expect(last.scopes.get('envoy/ns-1')?.get(TYPE_URL.cluster)?.has('outbound|80||svc-1.ns-1.svc.cluster.local')).toBe(false);
    expect(bytesOf(last)).toEqual(fromScratch(later, ['late']));
  });

  it('with sliceInitial, builds the first snapshot in slices: serial 0 until then, a change made meanwhile follows', async () => {
    const big = mesh(400);
    const source = new FakeSource(big);
    cache = createSnapshotCache(source, { debounceMs: 0, sliceMs: 0, sliceInitial: true, log: quiet });
    const published: Snapshot[] = [];
    cache.subscribe((s) => published.push(s));
    // Nothing built yet: an empty snapshot, and timers and I/O keep running while the build goes on.
    expect(cache.building()).toBe(true);
    expect(cache.current().serial).toBe(0);
    expect(cache.current().scopes.get('envoy/ns-3')?.get(TYPE_URL.cluster)?.size ?? 0).toBe(0);
    let fired = 0;
    for (let i = 0; i < 50 && cache.building(); i++) {
      await new Promise((resolve) => setImmediate(resolve));
      fired++;
    }
    expect(fired).toBe(50);
    expect(published).toHaveLength(0);
    const services = new Map(big.services);
    services.delete('ns-2/svc-2' as ServiceKey);
    const later: RegistryState = { ...big, services };
    source.emit(later, ['ns-2/svc-2' as ServiceKey]);

    await cache.whenBuilt();
    expect(published.map((s) => s.serial)).toEqual([1]);
    expect(bytesOf(published[0] as Snapshot)).toEqual(fromScratch(big));
    for (let i = 0; published.length < 2; i++) {
      expect(i, 'the change made during the first build was not published').toBeLessThan(1000);
      await new Promise((resolve) => setTimeout(resolve, 1));
      await cache.whenBuilt();
    }
    expect(published.map((s) => s.serial)).toEqual([1, 2]);
    expect(bytesOf(cache.current())).toEqual(fromScratch(later));
  });

  it('with sliceInitial, a first build that throws (a translation bug) fails whenBuilt(): start-up fails', async () => {
    let calls = 0;
    cache = createSnapshotCache(new FakeSource(mesh(10)), {
      sliceMs: 0,
      sliceInitial: true,
      log: quiet,
      translate: (key, state, options) => {
        // In a later slice (a throw in the first one comes out of createSnapshotCache itself, as without slices).
        if (++calls === 5) throw new Error('translation bug');
        return translateService(key, state, options);
      },
    });
    expect(cache.building()).toBe(true);
    await expect(cache.whenBuilt()).rejects.toThrow('translation bug');
    expect(cache.building()).toBe(false);
    expect(cache.current().serial).toBe(0);
  });

  it('flush() builds at once, without slices', () => {
    const source = new FakeSource(mesh(4));
    cache = createSnapshotCache(source, { debounceMs: 60_000, leadingEdge: false, sliceMs: 0, log: quiet });
    const big = mesh(100);
    source.emit(big, [...big.services.keys()]);
    cache.flush();
    expect(cache.building()).toBe(false);
    expect(cache.current().serial).toBe(2);
    expect(bytesOf(cache.current())).toEqual(fromScratch(big));
  });
});
