// The registry seam: a consistent view of Services, EndpointSlices, Pods and policies, and which Services each change touched.
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';

/** `<namespace>/<name>` of a Service; EndpointSlices map to it through the `kubernetes.io/service-name` label. */
export type ServiceKey = `${string}/${string}`;

export { normalisePrincipal, parsePrincipal, type Principal, PRINCIPAL_FORMS, spiffeId } from './principal.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export function serviceKey(namespace: string, name: string): ServiceKey {
  return `${namespace}/${name}`;
}

/** The namespace whose namespace-wide policies apply to the whole mesh (Istio's root namespace). */
export const MESH_POLICY_NAMESPACE = 'skein-system';
export const POLICY_API_VERSION = 'skein.dev/v1';

export type PolicyKind = 'PeerAuthentication' | 'AuthorizationPolicy';
export type MtlsMode = 'STRICT' | 'PERMISSIVE';
export type AuthorizationAction = 'ALLOW' | 'DENY';

/** A Service a policy applies to (only Services can be targeted). */
export interface PolicyTargetRef {
  readonly kind: 'Service';
  readonly name: string;
}

export interface PolicyMetadata {
  readonly name: string;
  readonly namespace: string;
  readonly resourceVersion?: string;
}

/** Istio's PeerAuthentication shape (validated): the inbound mTLS mode of the targeted Services' pods. */
export interface PeerAuthentication {
  readonly apiVersion: typeof POLICY_API_VERSION;
  readonly kind: 'PeerAuthentication';
  readonly metadata: PolicyMetadata;
  readonly spec: {
    readonly mtls: { readonly mode: MtlsMode };
    /** Absent: every Service of the namespace (of the mesh in skein-system). */
    readonly targetRefs?: readonly PolicyTargetRef[];
  };
}

/** Who may call: every field present must match (principals as written: `<ns>/<sa>`, `<td>/ns/<ns>/sa/<sa>`, `spiffe://…`, `*`). */
export interface AuthorizationSource {
  readonly principals?: readonly string[];
  readonly namespaces?: readonly string[];
}

/** What is called: every field present must match (paths are prefixes; a trailing `*` is allowed and ignored). */
export interface AuthorizationOperation {
  readonly methods?: readonly string[];
  readonly paths?: readonly string[];
}

export interface AuthorizationRule {
  readonly from?: readonly { readonly source: AuthorizationSource }[];
  readonly to?: readonly { readonly operation: AuthorizationOperation }[];
}

/** Istio's AuthorizationPolicy shape (validated; `action` defaulted to ALLOW, `rules` to []). */
export interface AuthorizationPolicy {
  readonly apiVersion: typeof POLICY_API_VERSION;
  readonly kind: 'AuthorizationPolicy';
  readonly metadata: PolicyMetadata;
  readonly spec: {
    readonly targetRefs?: readonly PolicyTargetRef[];
    readonly action: AuthorizationAction;
    readonly rules: readonly AuthorizationRule[];
  };
}

export type SkeinPolicy = PeerAuthentication | AuthorizationPolicy;

/** `<namespace>/<kind>/<name>`: the key of a policy in RegistryState.policies. */
export function policyKey(policy: { kind: PolicyKind; metadata: { namespace: string; name: string } }): string {
  return `${policy.metadata.namespace}/${policy.kind}/${policy.metadata.name}`;
}

/**
 * An immutable view of everything the registry holds. Maps are never mutated after they are handed out:
 * a change produces a new RegistryState that shares the unchanged objects with the old one.
 */
export interface RegistryState {
  /** Keyed by ServiceKey. */
  readonly services: ReadonlyMap<ServiceKey, V1Service>;
  /** Every EndpointSlice of a Service (several slices per Service are normal), keyed by the owning ServiceKey. */
  readonly slices: ReadonlyMap<ServiceKey, readonly V1EndpointSlice[]>;
  /** Keyed by `<namespace>/<name>`; used to find an endpoint's service account and sidecar through targetRef. */
  readonly pods: ReadonlyMap<string, V1Pod>;
  /** PeerAuthentication and AuthorizationPolicy objects, keyed by policyKey (`<ns>/<kind>/<name>`). */
  readonly policies: ReadonlyMap<string, SkeinPolicy>;
}

export interface RegistryChange {
  readonly state: RegistryState;
  /** The Services whose resources may differ from the previous state (added, changed, removed, or their slices/pods changed). */
  readonly changed: ReadonlySet<ServiceKey>;
  /**
   * performance.now() when the source first noticed this change (a file event before the file was read and
   * parsed); omitted when it is the moment of the event. The cache's debounce window and convergence timing start
   * there, so reading a large file overlaps the window instead of adding to it.
   */
  readonly detectedAt?: number;
}

export type RegistryListener = (change: RegistryChange) => void;

/** A problem the registry hit and survived: it keeps serving the last good state. */
export interface RegistryProblem {
  readonly code: string;
  readonly message: string;
}

export interface Registry {
  /** Loads the first full state; resolves once it is available (the control plane is not ready before). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The current state (the last good one if the source is broken). */
  state(): RegistryState;
  /** Called after every change, with the Services it touched. Returns an unsubscribe function. */
  subscribe(listener: RegistryListener): () => void;
  /** Called for each problem (malformed file, watch failure); the registry keeps serving the last good state. */
  onProblem(listener: (problem: RegistryProblem) => void): () => void;
  /** Problems of the source's current version when it was rejected (a registry file being served from its last good version); 0 otherwise. */
  readonly rejected?: number;
  /** A short description for logs and /debug: `file:/path` or `kubernetes:https://…`. */
  readonly description: string;
}

export const EMPTY_STATE: RegistryState = Object.freeze({
  services: new Map(),
  slices: new Map(),
  pods: new Map(),
  policies: new Map(),
});

/** Which Services changed between two states: compares object identity, so unchanged objects must be shared. */
export function diffStates(before: RegistryState, after: RegistryState): Set<ServiceKey> {
  const changed = new Set<ServiceKey>();
  for (const [key, svc] of after.services) if (before.services.get(key) !== svc) changed.add(key);
  for (const key of before.services.keys()) if (!after.services.has(key)) changed.add(key);
  for (const [key, slices] of after.slices) if (!sameList(before.slices.get(key), slices)) changed.add(key);
  for (const key of before.slices.keys()) if (!after.slices.has(key)) changed.add(key);
  if (before.pods !== after.pods) {
    const touchedPods = new Set<string>();
    for (const [key, pod] of after.pods) if (before.pods.get(key) !== pod) touchedPods.add(key);
    for (const key of before.pods.keys()) if (!after.pods.has(key)) touchedPods.add(key);
    if (touchedPods.size > 0) {
      // Names first: a set lookup per endpoint, and a key string only for the few that match a touched name.
      const names = new Set<string>();
      for (const key of touchedPods) names.add(key.slice(key.indexOf('/') + 1));
      const touches = (e: { targetRef?: { kind?: string; name?: string; namespace?: string } }, s: V1EndpointSlice): boolean =>
        e.targetRef?.name !== undefined && names.has(e.targetRef.name) && touchedPods.has(podKeyOf(e.targetRef, s));
      for (const [key, slices] of after.slices) {
        if (slices.some((s) => s.endpoints?.some((e) => touches(e, s)))) changed.add(key);
      }
    }
  }
  if (before.policies !== after.policies) addPolicyChanges(before, after, changed);
  return changed;
}

/**
 * Adds every Service a policy change can affect: the targeted Services, all Services of the namespace for a
 * namespace-wide policy, all Services for a namespace-wide one in skein-system (mesh-wide).
 */
function addPolicyChanges(before: RegistryState, after: RegistryState, changed: Set<ServiceKey>): void {
  const touched: SkeinPolicy[] = [];
  for (const [key, policy] of after.policies) {
    const old = before.policies.get(key);
    if (old !== policy) {
      touched.push(policy);
      if (old) touched.push(old);
    }
  }
  for (const [key, policy] of before.policies) if (!after.policies.has(key)) touched.push(policy);
  if (touched.length === 0) return;
  const wholeNamespaces = new Set<string>();
  let mesh = false;
  for (const p of touched) {
    const ns = p.metadata.namespace;
    if (!p.spec.targetRefs) {
      if (ns === MESH_POLICY_NAMESPACE) mesh = true;
      wholeNamespaces.add(ns);
      continue;
    }
    for (const ref of p.spec.targetRefs) {
      const key = serviceKey(ns, ref.name);
      if (after.services.has(key) || before.services.has(key)) changed.add(key);
    }
  }
  for (const services of [after.services, before.services]) {
    for (const [key, svc] of services) {
      if (mesh || wholeNamespaces.has(svc.metadata?.namespace ?? key.slice(0, key.indexOf('/')))) changed.add(key);
    }
  }
}

function sameList<T>(a: readonly T[] | undefined, b: readonly T[]): boolean {
  if (!a || a.length !== b.length) return false;
  return a.every((x, i) => x === b[i]);
}

function podKeyOf(ref: { kind?: string; name?: string; namespace?: string } | undefined, slice: V1EndpointSlice): string {
  if (!ref || (ref.kind && ref.kind !== 'Pod') || !ref.name) return '';
  return `${ref.namespace ?? slice.metadata?.namespace ?? 'default'}/${ref.name}`;
}

/** Where the registry comes from (matches control-plane/config.ts RegistrySource). */
export type RegistrySourceSpec =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'kubernetes'; readonly kubeconfig?: string; readonly namespaces?: readonly string[] };

/** Creates (does not start) the Registry for a source; implementations load lazily so this file stays light. */
export async function createRegistry(source: RegistrySourceSpec): Promise<Registry> {
  if (source.kind === 'file') {
    const { FileRegistry } = await import('./file.ts');
    return new FileRegistry(source.path);
  }
  const { KubernetesRegistry } = await import('./kubernetes.ts');
  return new KubernetesRegistry({ kubeconfig: source.kubeconfig, namespaces: source.namespaces });
}
