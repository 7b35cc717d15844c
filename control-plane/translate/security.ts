// A Service's security metadata (peer identities, inbound mTLS mode, authorization rules) from policies and annotations.
import type { V1EndpointSlice, V1Pod } from '@kubernetes/client-node';
import type { AuthzOperation, AuthzSource } from '../../proto/index.ts';
import type {
  AuthorizationAction,
  AuthorizationPolicy,
  AuthorizationRule,
  MtlsMode,
  PeerAuthentication,
  SkeinPolicy,
} from '../registry/registry.ts';
import { MESH_POLICY_NAMESPACE, normalisePrincipal, parsePrincipal, spiffeId } from '../registry/registry.ts';
import type { AllowEntry, ServiceSettings } from './annotations.ts';

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_MTLS_MODE: MtlsMode = 'STRICT';

export type { AuthzOperation, AuthzSource };

/** Matches when one of `from` and one of `to` match; an absent list matches anything. */
export interface AuthzRule {
  readonly from?: readonly AuthzSource[];
  readonly to?: readonly AuthzOperation[];
}

/** Istio semantics: any deny rule denies; else, when `allow` is present, one of its rules must match; else allowed. */
export interface Authz {
  readonly deny: readonly AuthzRule[];
  readonly allow?: readonly AuthzRule[];
}

/** The fields added to `filter_metadata.skein` of the Service's envoy-scope clusters. */
export interface ServiceSecurity {
  readonly identities: readonly string[];
  readonly mtlsMode: MtlsMode;
  readonly authz?: Authz;
}

interface CompiledAuthz {
  readonly key: string;
  readonly action: AuthorizationAction;
  readonly rules: readonly AuthzRule[];
}

/** Policies that apply namespace-wide, and those targeting a Service by name. */
interface Scoped<T> {
  readonly wide: T[];
  readonly byService: Map<string, T[]>;
}

interface NamespacePolicies {
  readonly peer: Scoped<PeerAuthentication>;
  readonly authz: Scoped<CompiledAuthz>;
}

/** Every policy grouped by namespace, rules already normalised: built once per policies map and trust domain. */
export interface PolicyIndex {
  readonly trustDomain: string;
  readonly namespaces: ReadonlyMap<string, NamespacePolicies>;
}

const indexCache = new WeakMap<ReadonlyMap<string, SkeinPolicy>, Map<string, PolicyIndex>>();

/** The index of `policies` (memoised: registry states share the policies map until a policy changes). */
export function policyIndex(policies: ReadonlyMap<string, SkeinPolicy>, trustDomain: string): PolicyIndex {
  let byDomain = indexCache.get(policies);
  if (!byDomain) indexCache.set(policies, (byDomain = new Map()));
  let index = byDomain.get(trustDomain);
  if (!index) byDomain.set(trustDomain, (index = buildIndex(policies, trustDomain)));
  return index;
}

function buildIndex(policies: ReadonlyMap<string, SkeinPolicy>, trustDomain: string): PolicyIndex {
  const namespaces = new Map<string, NamespacePolicies>();
  const scope = (ns: string): NamespacePolicies => {
    let s = namespaces.get(ns);
    if (!s) {
      s = { peer: { wide: [], byService: new Map() }, authz: { wide: [], byService: new Map() } };
      namespaces.set(ns, s);
    }
    return s;
  };
  const place = <T>(scoped: Scoped<T>, item: T, policy: SkeinPolicy): void => {
    if (!policy.spec.targetRefs) return void scoped.wide.push(item);
    for (const ref of policy.spec.targetRefs) {
      const list = scoped.byService.get(ref.name);
      if (list) list.push(item);
      else scoped.byService.set(ref.name, [item]);
    }
  };
  for (const key of [...policies.keys()].sort()) {
    const policy = policies.get(key) as SkeinPolicy;
    const s = scope(policy.metadata.namespace);
    if (policy.kind === 'PeerAuthentication') place(s.peer, policy, policy);
    else place(s.authz, compileAuthz(key, policy, trustDomain), policy);
  }
  return { trustDomain, namespaces };
}

function compileAuthz(key: string, policy: AuthorizationPolicy, trustDomain: string): CompiledAuthz {
  return { key, action: policy.spec.action, rules: policy.spec.rules.map((r) => compileRule(r, trustDomain)) };
}

function compileRule(rule: AuthorizationRule, trustDomain: string): AuthzRule {
  const out: { from?: AuthzSource[]; to?: AuthzOperation[] } = {};
  if (rule.from?.length) {
    out.from = rule.from.map(({ source }) => {
      const principals = source.principals?.map((p) => {
        const parsed = parsePrincipal(p);
        // Validated by the registry; an unparsable principal can only match nothing.
        return parsed ? normalisePrincipal(parsed, trustDomain) : `invalid:${p}`;
      });
      return {
        ...(principals?.length ? { principals: unique(principals) } : {}),
        ...(source.namespaces?.length ? { namespaces: unique(source.namespaces) } : {}),
      };
    });
  }
  if (rule.to?.length) {
    out.to = rule.to.map(({ operation }) => ({
      ...(operation.methods?.length ? { methods: unique(operation.methods) } : {}),
      ...(operation.paths?.length ? { paths: unique(operation.paths.map(pathPrefix)) } : {}),
    }));
  }
  return out;
}

/** Every path is a prefix: a trailing `*` (Istio's prefix form) is dropped, and `*` alone is every path. */
export function pathPrefix(path: string): string {
  if (path === '*') return '/';
  return path.endsWith('*') ? path.slice(0, -1) : path;
}

function unique(list: readonly string[]): string[] {
  return [...new Set(list)];
}

export interface SecurityInput {
  readonly namespace: string;
  readonly name: string;
  readonly settings: ServiceSettings;
  readonly slices: readonly V1EndpointSlice[];
  readonly pods: ReadonlyMap<string, V1Pod>;
  readonly index: PolicyIndex;
}

/** A problem with the policies that apply to a Service (reported for that Service). */
export interface SecurityProblem {
  readonly code: string;
  readonly message: string;
}

/** Identities, mode and authorization of one Service; pure. */
export function serviceSecurity(input: SecurityInput): { security: ServiceSecurity; problems: SecurityProblem[] } {
  const problems: SecurityProblem[] = [];
  const { namespace, name, index } = input;
  const here = index.namespaces.get(namespace);
  const mesh = namespace === MESH_POLICY_NAMESPACE ? undefined : index.namespaces.get(MESH_POLICY_NAMESPACE);
  const where = `Service ${namespace}/${name}`;

  const mtlsMode =
    input.settings.mtlsMode ??
    modeOf(here?.peer.byService.get(name), `${where}: the PeerAuthentication policies targeting it`, problems) ??
    modeOf(here?.peer.wide, `${where}: the namespace-wide PeerAuthentication policies of ${namespace}`, problems) ??
    modeOf(mesh?.peer.wide, `${where}: the mesh-wide PeerAuthentication policies in ${MESH_POLICY_NAMESPACE}`, problems) ??
    DEFAULT_MTLS_MODE;

  const applied = [...(mesh?.authz.wide ?? []), ...(here?.authz.wide ?? []), ...(here?.authz.byService.get(name) ?? [])];
  applied.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const deny: AuthzRule[] = [];
  let allow: AuthzRule[] | undefined;
  for (const policy of applied) {
    if (policy.action === 'DENY') deny.push(...policy.rules);
    else (allow ??= []).push(...policy.rules);
  }
  if (input.settings.allow) {
    allow ??= [];
    const rule = allowRule(input.settings.allow, index.trustDomain);
    if (rule) allow.push(rule);
  }
  const authz = applied.length > 0 || allow ? { deny, ...(allow ? { allow } : {}) } : undefined;

  const identities = endpointIdentities(input.slices, input.pods, index.trustDomain);
  return { security: { identities, mtlsMode, ...(authz ? { authz } : {}) }, problems };
}

/** The mode of one precedence level; policies that disagree are reported and STRICT (the safer mode) wins. */
function modeOf(list: readonly PeerAuthentication[] | undefined, what: string, problems: SecurityProblem[]): MtlsMode | undefined {
  if (!list || list.length === 0) return undefined;
  const modes = new Set(list.map((p) => p.spec.mtls.mode));
  if (modes.size === 1) return list[0]?.spec.mtls.mode;
  const names = list.map((p) => `${p.metadata.name} (${p.spec.mtls.mode})`).join(', ');
  problems.push({
    code: 'SKEIN_TRANSLATE_POLICY_CONFLICT',
    message: `${what} disagree: ${names}; using STRICT until one is removed or they agree`,
  });
  return 'STRICT';
}

/** The one ALLOW rule of `skein.dev/allow`; undefined when it names no valid caller (it then allows no one). */
function allowRule(entries: readonly AllowEntry[], trustDomain: string): AuthzRule | undefined {
  const principals: string[] = [];
  const namespaces: string[] = [];
  for (const e of entries) {
    if ('namespaceWide' in e) namespaces.push(e.namespaceWide);
    else principals.push(normalisePrincipal(e, trustDomain));
  }
  const from: AuthzSource[] = [];
  if (principals.length > 0) from.push({ principals: unique(principals) });
  if (namespaces.length > 0) from.push({ namespaces: unique(namespaces) });
  return from.length > 0 ? { from } : undefined;
}

/**
 * Sorted unique SPIFFE IDs of the Service's endpoints, from each endpoint's Pod (serviceAccountName, `default`
 * when unset as Kubernetes does). Endpoints without a known Pod contribute nothing.
 */
export function endpointIdentities(slices: readonly V1EndpointSlice[], pods: ReadonlyMap<string, V1Pod>, trustDomain: string): string[] {
  const ids = new Set<string>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    for (const ep of slice.endpoints ?? []) {
      const ref = ep.targetRef;
      if (!ref?.name || (ref.kind ?? 'Pod') !== 'Pod') continue;
      const podNs = ref.namespace ?? slice.metadata?.namespace ?? 'default';
      const pod = pods.get(`${podNs}/${ref.name}`);
      if (!pod) continue;
      ids.add(spiffeId(trustDomain, podNs, pod.spec?.serviceAccountName || 'default'));
    }
  }
  return [...ids].sort();
}
