// The snapshot cache retranslates exactly the Services a policy change affects (diffStates names them) and only those.
import { afterEach, describe, expect, it } from 'vitest';
import type { Cluster__Output } from '../../../proto/index.ts';
import { TYPE_URL, unpack } from '../../../proto/index.ts';
import type { Logger } from '../../../control-plane/log.ts';
import { createSnapshotCache, type ControlPlaneCache } from '../../../control-plane/cache/index.ts';
import type { Snapshot } from '../../../control-plane/cache/snapshot.ts';
import type { RegistryState, SkeinPolicy } from '../../../control-plane/registry/registry.ts';
import { policyKey } from '../../../control-plane/registry/registry.ts';
import { authorizationPolicy, peerAuthentication, pod, registryState, service, slice } from '../translate/fixtures.ts';
import { FakeSource } from './fake-source.ts';


const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {}, debugEnabled: false };
const svc = (ns: string, name: string, ip: string) => service(ns, name, { clusterIP: ip, ports: [{ name: 'http', port: 80 }] });
const eps = (ns: string, name: string, ip: string) => slice(ns, name, `${name}-a`, [{ name: 'http', port: 8080 }], [{ ip, pod: `${name}-0` }]);

function withPolicies(state: RegistryState, policies: SkeinPolicy[]): RegistryState {
  return { ...state, policies: new Map(policies.map((p) => [policyKey(p), p])) };
}

const WEB = 'outbound|80||web.shop.svc.cluster.local';
const API = 'outbound|80||api.shop.svc.cluster.local';
const DB = 'outbound|80||db.blog.svc.cluster.local';

function cluster(snap: Snapshot, name: string) {
  const r = snap.scopes.get('envoy/shop')?.get(TYPE_URL.cluster)?.get(name);
  expect(r).toBeDefined();
  return r!;
}
function mode(snap: Snapshot, name: string): string | undefined {
  const decoded = unpack<Cluster__Output>(cluster(snap, name).any);
  return decoded.metadata?.filter_metadata.skein?.fields?.mtls_mode?.stringValue;
}

let cache: ControlPlaneCache | undefined;
afterEach(() => {
  cache?.close();
  cache = undefined;
});

describe('snapshot cache and policies', () => {
  it('retranslates the Services a policy change affects, and publishes only their clusters', () => {
    const base = registryState(
      [svc('shop', 'web', '10.96.0.1'), svc('shop', 'api', '10.96.0.2'), svc('blog', 'db', '10.96.0.3')],
      [eps('shop', 'web', '10.1.0.1'), eps('shop', 'api', '10.1.0.2'), eps('blog', 'db', '10.1.0.3')],
      [pod('shop', 'web-0', 'web'), pod('shop', 'api-0', 'api'), pod('blog', 'db-0', 'db')],
    );
    const source = new FakeSource(base);
    cache = createSnapshotCache(source, { log: quiet, trustDomain: 'mesh.example' });
    const first = cache.current();
    expect(mode(first, WEB)).toBe('STRICT');
    const ids = unpack<Cluster__Output>(cluster(first, WEB).any).metadata?.filter_metadata.skein?.fields?.identities;
    expect(ids?.listValue?.values?.map((v) => v.stringValue)).toEqual(['spiffe://mesh.example/ns/shop/sa/web']);

    // A policy targeting web: only web's cluster changes.
    const targeted = peerAuthentication('shop', 'web-legacy', 'PERMISSIVE', ['web']);
    source.moveTo(withPolicies(base, [targeted]));
    cache.flush();
    const second = cache.current();
    expect(cache.lastPublish().translated).toBe(1);
    expect([...(second.changes.get('envoy/shop')?.get(TYPE_URL.cluster) ?? [])]).toEqual([WEB]);
    expect(second.changes.get('envoy/shop')?.get(TYPE_URL.endpoint)?.size).toBe(0);
    expect(second.changes.get('proxyless')?.get(TYPE_URL.cluster)?.size).toBe(0); // proxyless clusters carry no policy
    expect(mode(second, WEB)).toBe('PERMISSIVE');
    expect(cluster(second, API)).toBe(cluster(first, API));

    // A mesh-wide policy: every Service is retranslated; web keeps its targeted mode, the others change.
    source.moveTo(withPolicies(base, [targeted, peerAuthentication('skein-system', 'mesh', 'PERMISSIVE')]));
    cache.flush();
    const third = cache.current();
    expect(cache.lastPublish().translated).toBe(3);
    expect([...(third.changes.get('envoy/shop')?.get(TYPE_URL.cluster) ?? [])].sort()).toEqual([API, DB]);
    expect([mode(third, WEB), mode(third, API), mode(third, DB)]).toEqual(['PERMISSIVE', 'PERMISSIVE', 'PERMISSIVE']);

    // A namespace-wide AuthorizationPolicy in blog: only db.
    const allowNothing = authorizationPolicy('blog', 'lockdown', {});
    source.moveTo(withPolicies(source.current, [...source.current.policies.values(), allowNothing]));
    cache.flush();
    const fourth = cache.current();
    expect(cache.lastPublish().translated).toBe(1);
    expect([...(fourth.changes.get('envoy/shop')?.get(TYPE_URL.cluster) ?? [])]).toEqual([DB]);
    const authz = unpack<Cluster__Output>(cluster(fourth, DB).any).metadata?.filter_metadata.skein?.fields?.authz;
    expect(Object.keys(authz?.structValue?.fields ?? {}).sort()).toEqual(['allow', 'deny']);
    expect(cache.translationProblems().size).toBe(0);
  });
});
