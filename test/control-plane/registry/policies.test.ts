// Policies in the file registry: PeerAuthentication and AuthorizationPolicy parsing, validation messages, and diffStates.
import { describe, expect, it } from 'vitest';
import { RegistryInvalidError } from '../../../control-plane/registry/errors.ts';
import { parseRegistryText } from '../../../control-plane/registry/file.ts';
import { buildState, normalizePolicy } from '../../../control-plane/registry/objects.ts';
import { parsePrincipal } from '../../../control-plane/registry/principal.ts';
import { diffStates, type SkeinPolicy } from '../../../control-plane/registry/registry.ts';
import { service } from '../translate/fixtures.ts';

const docs = (...d: string[]): string => d.join('---\n');

function invalid(text: string): string[] {
  try {
    parseRegistryText('registry.yaml', text);
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryInvalidError);
    return [...(err as RegistryInvalidError).problems];
  }
  throw new Error('expected the file to be rejected');
}

const peerAuth = `apiVersion: skein.dev/v1
kind: PeerAuthentication
metadata: { name: legacy, namespace: shop }
spec:
  mtls: { mode: PERMISSIVE }
  targetRefs: [{ kind: Service, name: web }]
`;
const authz = `apiVersion: skein.dev/v1
kind: AuthorizationPolicy
metadata: { name: web-readers, namespace: shop }
spec:
  targetRefs: [{ kind: Service, name: web, group: "" }]
  rules:
    - from:
        - source: { principals: ["shop/frontend", "cluster.local/ns/ops/sa/probe"] }
        - source: { namespaces: [monitoring, "*"] }
      to:
        - operation: { methods: [GET, HEAD], paths: ["/api/*", "/healthz"] }
    - {}
`;

describe('policies in the registry file', () => {
  it('reads PeerAuthentication and AuthorizationPolicy into their clean shapes, keyed ns/kind/name', () => {
    const loaded = parseRegistryText('registry.yaml', docs(peerAuth, authz, 'apiVersion: skein.dev/v1\nkind: AuthorizationPolicy\nmetadata: { name: deny-all }\nspec: {}\n'));
    expect(loaded.policies).toHaveLength(3);
    const [pa, ap, empty] = loaded.policies as [SkeinPolicy, SkeinPolicy, SkeinPolicy];
    expect(pa).toEqual({
      apiVersion: 'skein.dev/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'legacy', namespace: 'shop' },
      spec: { mtls: { mode: 'PERMISSIVE' }, targetRefs: [{ kind: 'Service', name: 'web' }] },
    });
    expect(ap.spec).toEqual({
      targetRefs: [{ kind: 'Service', name: 'web' }],
      action: 'ALLOW',
      rules: [
        {
          from: [{ source: { principals: ['shop/frontend', 'cluster.local/ns/ops/sa/probe'] } }, { source: { namespaces: ['monitoring', '*'] } }],
          to: [{ operation: { methods: ['GET', 'HEAD'], paths: ['/api/*', '/healthz'] } }],
        },
        {},
      ],
    });
    // `spec: {}` is Istio's allow-nothing policy: ALLOW with no rules.
    expect(empty.metadata.namespace).toBe('default');
    expect(empty.spec).toEqual({ action: 'ALLOW', rules: [] });
    expect(Object.isFrozen(ap.spec)).toBe(true);
    const state = buildState([], [], [], loaded.policies);
    expect([...state.policies.keys()]).toEqual(['shop/PeerAuthentication/legacy', 'shop/AuthorizationPolicy/web-readers', 'default/AuthorizationPolicy/deny-all']);
  });

  it('names document, line, object and field path of every policy problem', () => {
    const text = docs(
      `apiVersion: skein.dev/v1\nkind: PeerAuthentication\nmetadata: { name: pa, namespace: shop }\nspec:\n  mtls: { mode: DISABLE }\n  selector: { matchLabels: { app: web } }\n  targetRefs: [{ kind: Deployment, name: web }, { kind: Service, name: Web }]\n`,
      `apiVersion: skein.dev/v1\nkind: AuthorizationPolicy\nmetadata: { name: ap, namespace: shop }\nspec:\n  action: AUDIT\n  targetRefs: []\n  rules:\n    - from: [{ source: { principals: ["shop/*", "not a principal"], ipBlocks: ["1.2.3.4"] } }]\n      to: [{ operation: { methods: [GET, GETT, post], paths: [api, "/a*b"] } }]\n      when: []\n    - from: []\n    - to: [{ operation: {} }]\n    - 7\n`,
      `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: istio }\nspec: {}\n`,
      `apiVersion: skein.dev/v1\nkind: PeerAuthentication\nmetadata: { name: nospec }\n`,
      `apiVersion: skein.dev/v1\nkind: AuthorizationPolicy\nmetadata: { name: typo }\nspec:\n  rule: [{}]\n`,
    );
    const problems = invalid(text);
    const pa = 'registry.yaml: document 1 (PeerAuthentication shop/pa, line 1)';
    const ap = 'registry.yaml: document 2 (AuthorizationPolicy shop/ap, line 9)';
    expect(problems).toEqual([
      `${pa}: spec.selector: workload selectors are not supported; target Services with spec.targetRefs`,
      `${pa}: spec.mtls.mode: must be STRICT or PERMISSIVE, got "DISABLE"`,
      `${pa}: spec.targetRefs[0].kind: "Deployment": only Services can be targeted (kind: Service)`,
      `${pa}: spec.targetRefs[1].name: "Web" is not a Service name`,
      `${ap}: spec.targetRefs: must not be empty; omit targetRefs to apply to every Service of the namespace`,
      `${ap}: spec.action: must be ALLOW or DENY (AUDIT is not supported), got "AUDIT"`,
      `${ap}: spec.rules[0].when: conditions (when) are not supported; express the rule with from and to`,
      `${ap}: spec.rules[0].from[0].source.ipBlocks: IP blocks are not supported; match workload identities with principals`,
      `${ap}: spec.rules[0].from[0].source.principals[0]: "shop/*": for every service account of a namespace use namespaces: ["shop"]`,
      `${ap}: spec.rules[0].from[0].source.principals[1]: "not a principal" is not a principal; write "<namespace>/<service-account>", "<trust-domain>/ns/<ns>/sa/<sa>", "spiffe://<trust-domain>/ns/<ns>/sa/<sa>" or "*"`,
      `${ap}: spec.rules[0].to[0].operation.methods[1]: "GETT" is not an HTTP method (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)`,
      `${ap}: spec.rules[0].to[0].operation.methods[2]: "post" is not an HTTP method; write "POST"`,
      `${ap}: spec.rules[0].to[0].operation.paths[0]: "api" must start with "/" (a path matches itself and what is below it: "/api" matches "/api/v1")`,
      `${ap}: spec.rules[0].to[0].operation.paths[1]: "/a*b": "*" may only end a path (a trailing "*" is a prefix; suffix matches are not supported)`,
      `${ap}: spec.rules[1].from: must not be empty; omit from to match every caller`,
      `${ap}: spec.rules[2].to[0].operation: must set methods and/or paths (omit to to match every request)`,
      `${ap}: spec.rules[3]: expected a mapping with from and/or to ({} matches every request), got 7`,
      'registry.yaml: document 3 (AuthorizationPolicy default/istio, line 23): apiVersion: "security.istio.io/v1" is not supported for AuthorizationPolicy; use "skein.dev/v1"',
      'registry.yaml: document 4 (PeerAuthentication default/nospec, line 28): spec: required: a mapping with mtls.mode (STRICT or PERMISSIVE), got missing',
      'registry.yaml: document 5 (AuthorizationPolicy default/typo, line 32): spec.rule: unknown field; expected targetRefs, action, rules',
    ]);
  });

  it('rejects duplicate policies but lets the two kinds share a name', () => {
    const pa = 'apiVersion: skein.dev/v1\nkind: PeerAuthentication\nmetadata: { name: p }\nspec: { mtls: { mode: STRICT } }\n';
    const ap = 'apiVersion: skein.dev/v1\nkind: AuthorizationPolicy\nmetadata: { name: p }\nspec: {}\n';
    expect(parseRegistryText('r.yaml', docs(pa, ap)).policies).toHaveLength(2);
    expect(invalid(docs(pa, pa))).toEqual([
      'registry.yaml: document 2 (PeerAuthentication default/p, line 6): metadata.name: duplicate PeerAuthentication default/p (first defined in document 1 (line 1))',
    ]);
  });
});

describe('parsePrincipal', () => {
  it('accepts the short, Istio and SPIFFE forms and *', () => {
    expect(parsePrincipal('shop/web')).toEqual({ namespace: 'shop', serviceAccount: 'web' });
    expect(parsePrincipal('cluster.local/ns/shop/sa/web')).toEqual({ trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' });
    expect(parsePrincipal('spiffe://example.org/ns/a/sa/b.c')).toEqual({ trustDomain: 'example.org', namespace: 'a', serviceAccount: 'b.c' });
    expect(parsePrincipal('*')).toEqual({ any: true });
    for (const bad of ['shop/*', 'spiffe://x', 'Shop/web', 'a/b/c', '']) expect(parsePrincipal(bad), bad).toBeUndefined();
  });
});

describe('diffStates with policies', () => {
  const services = [service('shop', 'web', {}), service('shop', 'api', {}), service('blog', 'db', {}), service('skein-system', 'cp', {})];
  const pa = (ns: string, name: string, mode: string, targets?: string[]) =>
    normalizePolicy('PeerAuthentication', {
      metadata: { name, namespace: ns },
      spec: { mtls: { mode }, ...(targets ? { targetRefs: targets.map((t) => ({ kind: 'Service', name: t })) } : {}) },
    });
  const changed = (before: SkeinPolicy[], after: SkeinPolicy[]) =>
    [...diffStates(buildState(services, [], [], before), buildState(services, [], [], after))].sort();

  it('reports targeted Services, the namespace for namespace-wide policies, everything for mesh-wide ones', () => {
    const targeted = pa('shop', 't', 'PERMISSIVE', ['web', 'gone']);
    const nsWide = pa('shop', 'n', 'PERMISSIVE');
    const mesh = pa('skein-system', 'm', 'PERMISSIVE');
    const systemTargeted = pa('skein-system', 's', 'PERMISSIVE', ['cp']);
    expect(changed([], [targeted])).toEqual(['shop/web']);
    expect(changed([targeted], [])).toEqual(['shop/web']);
    expect(changed([], [nsWide])).toEqual(['shop/api', 'shop/web']);
    expect(changed([], [mesh])).toEqual(['blog/db', 'shop/api', 'shop/web', 'skein-system/cp']);
    expect(changed([], [systemTargeted])).toEqual(['skein-system/cp']);
    // Unchanged policy objects (shared identity) report nothing; a retarget reports old and new targets.
    expect(changed([targeted, nsWide], [targeted, nsWide])).toEqual([]);
    expect(changed([targeted], [pa('shop', 't', 'PERMISSIVE', ['api'])])).toEqual(['shop/api', 'shop/web']);
    // Narrowing a namespace-wide policy to one target still reports the whole namespace (the others lose it).
    expect(changed([nsWide], [pa('shop', 'n', 'PERMISSIVE', ['web'])])).toEqual(['shop/api', 'shop/web']);
  });
});
