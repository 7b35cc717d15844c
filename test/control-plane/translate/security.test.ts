// Security metadata of envoy-scope clusters: identities from endpoint pods, mTLS mode precedence, authz rules.
import { describe, expect, it } from 'vitest';
import type { Cluster__Output } from '../../../proto/index.ts';
import { pack, TYPE_URL, unpack } from '../../../proto/index.ts';
import type { ServiceResources, TranslateOptions } from '../../../control-plane/translate/build.ts';
import { translateService } from '../../../control-plane/translate/build.ts';
import { pathPrefix, policyIndex } from '../../../control-plane/translate/security.ts';
import type { RegistryState, SkeinPolicy } from '../../../control-plane/registry/registry.ts';
import { authorizationPolicy, peerAuthentication, pod, registryState, service, slice } from './fixtures.ts';

interface DecodedValue {
  kind?: string;
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  listValue?: { values?: DecodedValue[] };
  structValue?: { fields?: Record<string, DecodedValue> };
}

/** A decoded google.protobuf.Value as plain JSON. */
function json(v: DecodedValue | undefined): unknown {
  switch (v?.kind) {
    case 'stringValue':
      return v.stringValue;
    case 'numberValue':
      return v.numberValue;
    case 'boolValue':
      return v.boolValue;
    case 'listValue':
      return (v.listValue?.values ?? []).map(json);
    case 'structValue':
      return Object.fromEntries(Object.entries(v.structValue?.fields ?? {}).map(([k, x]) => [k, json(x)]));
    default:
      return undefined;
  }
}

/** `filter_metadata.skein` of a cluster after encoding and decoding it, as plain JSON. */
function skeinMetadata(cluster: object | undefined): Record<string, unknown> {
  expect(cluster).toBeDefined();
  const decoded = unpack<Cluster__Output>(pack(TYPE_URL.cluster, cluster as object));
  return json({ kind: 'structValue', structValue: decoded.metadata?.filter_metadata.skein as DecodedValue['structValue'] }) as Record<string, unknown>;
}

const web = (annotations?: Record<string, string>) =>
  service('shop', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9000 }] }, annotations);
const webSlice = slice('shop', 'web', 'web-a', [{ name: 'http', port: 8080 }, { name: 'grpc', port: 9000 }], [
  { ip: '10.1.0.1', pod: 'web-1' },
  { ip: '10.1.0.2', pod: 'web-2' },
  { ip: '10.1.0.3', pod: 'web-3' }, // no such pod: contributes nothing
  { ip: '10.1.0.4' }, // no targetRef
  { ip: '10.1.0.5', pod: 'canary', ready: false },
]);
const webPods = [pod('shop', 'web-1', 'web'), pod('shop', 'web-2', 'web'), pod('shop', 'canary')];

function translate(annotations: Record<string, string> | undefined, policies: SkeinPolicy[], options?: TranslateOptions): ServiceResources {
  return translateService('shop/web', registryState([web(annotations), service('shop', 'api', {})], [webSlice], webPods, policies), options);
}
const meta = (res: ServiceResources, i = 0) => skeinMetadata(res.clusters.envoy[i]);

describe('identities', () => {
  it('lists the SPIFFE IDs of the endpoints\' pods, sorted and unique (a pod without serviceAccountName runs as default)', () => {
    const res = translate(undefined, []);
    expect(meta(res)).toEqual({
      protocol: 'http',
      service: 'shop/web',
      port: 80,
      identities: ['spiffe://cluster.local/ns/shop/sa/default', 'spiffe://cluster.local/ns/shop/sa/web'],
      mtls_mode: 'STRICT',
    });
    expect(meta(res, 1).identities).toEqual(meta(res).identities);
    expect(res.problems).toEqual([]);
  });

  it('uses the configured trust domain', () => {
    expect(meta(translate(undefined, [], { trustDomain: 'example.org' })).identities).toEqual([
      'spiffe://example.org/ns/shop/sa/default',
      'spiffe://example.org/ns/shop/sa/web',
    ]);
  });

  it('is an empty list when no endpoint has a known pod (any identity of the trust domain)', () => {
    const res = translateService('shop/web', registryState([web()], [slice('shop', 'web', 'w', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.9', pod: 'gone' }])]));
    expect(meta(res).identities).toEqual([]);
  });

  it('leaves proxyless clusters and ExternalName Services without security metadata', () => {
    const res = translate({ 'skein.dev/allow': 'shop/api' }, [peerAuthentication('shop', 'p', 'PERMISSIVE')]);
    expect(Object.keys(skeinMetadata(res.clusters.proxyless[0])).sort()).toEqual(['port', 'protocol', 'service']);
    const ext = service('shop', 'ext', { type: 'ExternalName', externalName: 'example.com', ports: [{ name: 'https', port: 443 }] });
    const extRes = translateService('shop/ext', registryState([ext], [], [], [peerAuthentication('shop', 'p', 'PERMISSIVE')]));
    expect(Object.keys(skeinMetadata(extRes.clusters.envoy[0])).sort()).toEqual(['port', 'protocol', 'service']);
  });
});

describe('mtls_mode precedence: annotation > targeted > namespace > mesh > STRICT', () => {
  const mesh = peerAuthentication('skein-system', 'mesh', 'PERMISSIVE');
  const namespaceWide = peerAuthentication('shop', 'ns', 'STRICT');
  const targeted = peerAuthentication('shop', 'web-only', 'PERMISSIVE', ['web']);
  const otherTarget = peerAuthentication('shop', 'api-only', 'STRICT', ['api']);
  const otherNamespace = peerAuthentication('blog', 'ns', 'PERMISSIVE');
  const mode = (annotations: Record<string, string> | undefined, policies: SkeinPolicy[]) => meta(translate(annotations, policies)).mtls_mode;

  it('picks the most specific source', () => {
    expect(mode(undefined, [])).toBe('STRICT');
    expect(mode(undefined, [otherNamespace])).toBe('STRICT');
    expect(mode(undefined, [mesh])).toBe('PERMISSIVE');
    expect(mode(undefined, [mesh, namespaceWide])).toBe('STRICT');
    expect(mode(undefined, [mesh, namespaceWide, targeted, otherTarget])).toBe('PERMISSIVE');
    expect(mode({ 'skein.dev/mtls-mode': 'strict' }, [mesh, namespaceWide, targeted])).toBe('STRICT');
    expect(mode({ 'skein.dev/mtls-mode': 'PERMISSIVE' }, [])).toBe('PERMISSIVE');
  });

  it('reports a bad annotation and falls back to the policies', () => {
    const res = translate({ 'skein.dev/mtls-mode': 'off' }, [targeted]);
    expect(meta(res).mtls_mode).toBe('PERMISSIVE');
    expect(res.problems).toEqual([
      {
        service: 'shop/web',
        code: 'SKEIN_TRANSLATE_ANNOTATION',
        message: 'Service shop/web metadata.annotations["skein.dev/mtls-mode"]: "off" is not STRICT or PERMISSIVE (using the PeerAuthentication policies, else STRICT)',
      },
    ]);
  });

  it('uses STRICT when policies of one level disagree, and says which', () => {
    const res = translate(undefined, [namespaceWide, peerAuthentication('shop', 'lenient', 'PERMISSIVE')]);
    expect(meta(res).mtls_mode).toBe('STRICT');
    expect(res.problems.map((p) => [p.code, p.message])).toEqual([
      [
        'SKEIN_TRANSLATE_POLICY_CONFLICT',
        'Service shop/web: the namespace-wide PeerAuthentication policies of shop disagree: lenient (PERMISSIVE), ns (STRICT); using STRICT until one is removed or they agree',
      ],
    ]);
  });
});

describe('authz', () => {
  it('is absent when no policy or annotation applies (policies for other Services and namespaces do not)', () => {
    const res = translate(undefined, [
      authorizationPolicy('shop', 'api-only', { targetRefs: [{ kind: 'Service', name: 'api' }], rules: [{}] }),
      authorizationPolicy('blog', 'all', { action: 'DENY', rules: [{}] }),
    ]);
    expect(meta(res)).not.toHaveProperty('authz');
  });

  it('collects deny and allow rules from mesh-wide, namespace-wide and targeted policies, normalising principals and paths', () => {
    const policies = [
      authorizationPolicy('skein-system', 'no-trace', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['TRACE'] } }] }] }),
      authorizationPolicy('shop', 'readers', {
        targetRefs: [{ kind: 'Service', name: 'web' }],
        rules: [
          {
            from: [
              { source: { principals: ['shop/frontend', 'cluster.local/ns/ops/sa/probe', 'spiffe://other.org/ns/x/sa/y', 'shop/frontend'] } },
              { source: { namespaces: ['monitoring'], principals: ['*'] } },
            ],
            to: [{ operation: { methods: ['GET', 'HEAD'], paths: ['/api/*', '/healthz', '*'] } }],
          },
        ],
      }),
      authorizationPolicy('shop', 'no-admin', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }),
    ];
    const res = translate({ 'skein.dev/allow': 'shop/api, ops/*, cluster.local/ns/batch/sa/cron' }, policies, { trustDomain: 'mesh.example' });
    expect(meta(res).authz).toEqual({
      // Policies in key order (ns/kind/name): shop/…/no-admin, shop/…/readers, skein-system/…/no-trace; the annotation last.
      deny: [{ to: [{ paths: ['/admin'] }] }, { to: [{ methods: ['TRACE'] }] }],
      allow: [
        {
          from: [
            {
              principals: [
                'spiffe://mesh.example/ns/shop/sa/frontend',
                'spiffe://cluster.local/ns/ops/sa/probe',
                'spiffe://other.org/ns/x/sa/y',
              ],
            },
            { principals: ['*'], namespaces: ['monitoring'] },
          ],
          to: [{ methods: ['GET', 'HEAD'], paths: ['/api/', '/healthz', '/'] }],
        },
        {
          from: [
            { principals: ['spiffe://mesh.example/ns/shop/sa/api', 'spiffe://cluster.local/ns/batch/sa/cron'] },
            { namespaces: ['ops'] },
          ],
        },
      ],
    });
    expect(meta(res, 1).authz).toEqual(meta(res).authz);
    expect(res.problems).toEqual([]);
  });

  it('has no allow list for DENY-only policies, and an empty one for an ALLOW policy without rules (allow nothing)', () => {
    const denyOnly = translate(undefined, [authorizationPolicy('shop', 'd', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['blog'] } }] }] })]);
    expect(meta(denyOnly).authz).toEqual({ deny: [{ from: [{ namespaces: ['blog'] }] }] });
    const allowNothing = translate(undefined, [authorizationPolicy('shop', 'deny-all', {})]);
    expect(meta(allowNothing).authz).toEqual({ deny: [], allow: [] });
    const allowAll = translate(undefined, [authorizationPolicy('shop', 'allow-all', { rules: [{}] })]);
    expect(meta(allowAll).authz).toEqual({ deny: [], allow: [{}] });
  });

  it('reports bad skein.dev/allow entries and keeps the valid ones; with none valid it allows no caller', () => {
    const partly = translate({ 'skein.dev/allow': 'shop/api, nope, Shop/x' }, []);
    expect(meta(partly).authz).toEqual({ deny: [], allow: [{ from: [{ principals: ['spiffe://cluster.local/ns/shop/sa/api'] }] }] });
    expect(partly.problems.map((p) => p.message)).toEqual([
      'Service shop/web metadata.annotations["skein.dev/allow"]: "nope", "Shop/x" are not callers; list callers as "<namespace>/<service-account>" or "<namespace>/*", comma-separated (allowing only the valid entries)',
    ]);
    const none = translate({ 'skein.dev/allow': ' ' }, []);
    expect(meta(none).authz).toEqual({ deny: [], allow: [] });
    expect(none.problems.map((p) => p.message)).toEqual([
      'Service shop/web metadata.annotations["skein.dev/allow"]: is empty; list callers as "<namespace>/<service-account>" or "<namespace>/*", comma-separated (allowing no caller until fixed)',
    ]);
    expect(meta(translate({ 'skein.dev/allow': '*' }, [])).authz).toEqual({ deny: [], allow: [{ from: [{ principals: ['*'] }] }] });
  });
});

describe('policyIndex', () => {
  it('is built once per policies map and trust domain', () => {
    const state: RegistryState = registryState([web()], [], [], [peerAuthentication('shop', 'p', 'STRICT')]);
    expect(policyIndex(state.policies, 'cluster.local')).toBe(policyIndex(state.policies, 'cluster.local'));
    expect(policyIndex(state.policies, 'other')).not.toBe(policyIndex(state.policies, 'cluster.local'));
    expect(policyIndex(state.policies, 'cluster.local').namespaces.get('shop')?.peer.wide).toHaveLength(1);
  });

  it('turns Istio path forms into prefixes', () => {
    expect(['/api/*', '/x', '*', '/'].map(pathPrefix)).toEqual(['/api/', '/x', '/', '/']);
  });
});
