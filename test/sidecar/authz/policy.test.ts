// Tests authorization policy evaluation (Istio semantics) and the inbound per-port index built from MeshConfig.
import { describe, expect, it } from 'vitest';
import { authorize, buildInboundIndex, evaluate, NO_SERVICE } from '../../../sidecar/authz/index.ts';
import type { AuthzPolicy, ClusterConfig } from '../../../sidecar/xds/model.ts';

const APP = { principal: 'spiffe://cluster.local/ns/demo/sa/app', namespace: 'demo' };
const OTHER = { principal: 'spiffe://cluster.local/ns/prod/sa/web', namespace: 'prod' };
const PLAIN = { principal: undefined, namespace: undefined };
const GET = { method: 'GET', path: '/keys/a?x=1' };

describe('evaluate', () => {
  it('no allow list: allowed unless a deny rule matches', () => {
    const p: AuthzPolicy = { deny: [{ from: [{ namespaces: ['prod'] }], to: [] }] };
    expect(evaluate(p, APP, GET)).toMatchObject({ allowed: true });
    expect(evaluate(p, OTHER, GET)).toEqual({ allowed: false, reason: 'denied by deny rule 0' });
  });

  it('an allow list must match; deny wins over allow', () => {
    const p: AuthzPolicy = {
      deny: [{ from: [], to: [{ methods: ['DELETE'] }] }],
      allow: [{ from: [{ principals: [APP.principal] }], to: [] }],
    };
    expect(evaluate(p, APP, GET)).toEqual({ allowed: true, reason: 'allowed by allow rule 0' });
    expect(evaluate(p, OTHER, GET)).toEqual({ allowed: false, reason: 'no allow rule matched' });
    expect(evaluate(p, APP, { method: 'delete', path: '/' })).toMatchObject({ allowed: false });
    expect(evaluate({ deny: [], allow: [] }, APP, GET)).toMatchObject({ allowed: false });
  });

  it('matches principals exactly, "*", or by prefix/suffix wildcard; namespaces too; sources need every field', () => {
    const rule = (principals?: string[], namespaces?: string[]): AuthzPolicy => ({
      deny: [],
      allow: [{ from: [{ ...(principals ? { principals } : {}), ...(namespaces ? { namespaces } : {}) }], to: [] }],
    });
    expect(evaluate(rule(['*']), APP, GET).allowed).toBe(true);
    expect(evaluate(rule(['spiffe://cluster.local/ns/demo/sa/*']), APP, GET).allowed).toBe(true);
    expect(evaluate(rule(['spiffe://cluster.local/ns/demo/sa/*']), OTHER, GET).allowed).toBe(false);
    expect(evaluate(rule(['*/sa/web']), OTHER, GET).allowed).toBe(true);
    expect(evaluate(rule([APP.principal], ['prod']), APP, GET).allowed).toBe(false);
    expect(evaluate(rule(undefined, ['demo']), APP, GET).allowed).toBe(true);
  });

  it('plaintext callers match only rules without principals or namespaces', () => {
    expect(evaluate({ deny: [], allow: [{ from: [{ principals: ['*'] }], to: [] }] }, PLAIN, GET).allowed).toBe(false);
    expect(evaluate({ deny: [], allow: [{ from: [{ namespaces: ['*'] }], to: [] }] }, PLAIN, GET).allowed).toBe(false);
    expect(evaluate({ deny: [], allow: [{ from: [], to: [{ paths: ['/keys'] }] }] }, PLAIN, GET).allowed).toBe(true);
  });

  it('paths match whole segments (query ignored; a trailing / or * is a plain prefix); methods are exact', () => {
    const p = (paths: string[], methods?: string[]): AuthzPolicy => ({ deny: [], allow: [{ from: [], to: [{ paths, ...(methods ? { methods } : {}) }] }] });
    expect(evaluate(p(['/keys/']), APP, GET).allowed).toBe(true);
    expect(evaluate(p(['/keys/a*']), APP, GET).allowed).toBe(true);
    expect(evaluate(p(['/keys']), APP, GET).allowed).toBe(true);
    expect(evaluate(p(['/ke']), APP, GET).allowed).toBe(false); // not /keys: segments, not characters
    expect(evaluate(p(['/ke*']), APP, GET).allowed).toBe(true);
    expect(evaluate(p(['/admin']), APP, GET).allowed).toBe(false);
    expect(evaluate(p(['/keys'], ['POST']), APP, GET).allowed).toBe(false);
  });

  it('at L4 (no request), allow rules with operations never match and deny rules with operations do', () => {
    const allowOps: AuthzPolicy = { deny: [], allow: [{ from: [], to: [{ methods: ['GET'] }] }] };
    const denyOps: AuthzPolicy = { deny: [{ from: [], to: [{ paths: ['/x'] }] }] };
    expect(evaluate(allowOps, APP, undefined).allowed).toBe(false);
    expect(evaluate(denyOps, APP, undefined).allowed).toBe(false);
    expect(evaluate({ deny: [], allow: [{ from: [], to: [{}] }] }, APP, undefined).allowed).toBe(true);
  });
});

function cluster(name: string, port: number, extra: Partial<ClusterConfig>, address = '10.0.0.5'): ClusterConfig {
  return {
    name,
    version: '1',
    kind: 'eds',
    lbPolicy: 'round-robin',
    connectTimeoutMs: 1000,
    protocol: 'http1',
    endpoints: [{ address, port, weight: 1, health: 'healthy' }],
    endpointsVersion: '1',
    ...extra,
  };
}

describe('buildInboundIndex', () => {
  it('finds the Services whose endpoints are this pod and port; the strictest mode wins; none means STRICT', () => {
    const onlyApp: AuthzPolicy = { deny: [], allow: [{ from: [{ principals: [APP.principal] }], to: [] }] };
    const clusters = new Map(
      [
        cluster('a', 8080, { service: 'demo/kv', mtlsMode: 'PERMISSIVE', authz: onlyApp }),
        cluster('b', 8080, { service: 'demo/kv-headless', mtlsMode: 'STRICT' }),
        cluster('c', 9090, { service: 'demo/metrics', mtlsMode: 'PERMISSIVE', protocol: 'tcp' }),
        cluster('d', 8080, { service: 'demo/elsewhere', mtlsMode: 'PERMISSIVE' }, '10.0.0.6'),
      ].map((c) => [c.name, c]),
    );
    const index = buildInboundIndex({ clusters }, '10.0.0.5');
    expect(index.get(8080)).toEqual({ mode: 'STRICT', services: ['demo/kv', 'demo/kv-headless'], authz: [{ service: 'demo/kv', policy: onlyApp }], l7: true });
    expect(index.get(9090)).toEqual({ mode: 'PERMISSIVE', services: ['demo/metrics'], authz: [], l7: false });
    expect(index.get(7000)).toBeUndefined();
    expect(NO_SERVICE.mode).toBe('STRICT');
    const p = index.get(8080)!;
    expect(authorize(p, OTHER, GET)).toMatchObject({ allowed: false, service: 'demo/kv' });
    expect(authorize(p, APP, GET)).toMatchObject({ allowed: true });
  });

  it('a TCP Service is enforced at L4, even with rules on methods or paths (they cannot match a TCP connection)', () => {
    const p: AuthzPolicy = { deny: [], allow: [{ from: [{ namespaces: ['demo'] }], to: [] }] };
    const ops: AuthzPolicy = { deny: [], allow: [{ from: [], to: [{ methods: ['GET'] }] }] };
    const l4 = buildInboundIndex({ clusters: new Map([['t', cluster('t', 5432, { protocol: 'tcp', authz: p })]]) }, '10.0.0.5');
    const withOps = buildInboundIndex({ clusters: new Map([['t', cluster('t', 5432, { protocol: 'tcp', authz: ops })]]) }, '10.0.0.5');
    expect(l4.get(5432)?.l7).toBe(false);
    expect(withOps.get(5432)?.l7).toBe(false);
  });

  it('keeps a port opaque when one Service declares it TCP and another on the same port speaks HTTP with a policy', () => {
    const p: AuthzPolicy = { deny: [], allow: [{ from: [{ namespaces: ['demo'] }], to: [] }] };
    const clusters = new Map(
      [cluster('redis', 6379, { service: 'demo/redis', protocol: 'tcp' }), cluster('legacy', 6379, { service: 'demo/redis-legacy', authz: p })].map((c) => [c.name, c]),
    );
    const port = buildInboundIndex({ clusters }, '10.0.0.5').get(6379);
    expect(port?.l7).toBe(false); // parsing redis's bytes as HTTP would answer them with 400s
    expect(port?.authz.map((a) => a.service)).toEqual(['demo/redis-legacy']); // still enforced, at L4
  });
});
