// Shared by both registry sources: normalize objects to client-node's shape, fingerprint them, build immutable states.
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import { logger } from '../log.ts';
import type { AuthorizationRule, PolicyKind, PolicyTargetRef, RegistryProblem, RegistryState, ServiceKey, SkeinPolicy } from './registry.ts';
import { POLICY_API_VERSION, SERVICE_NAME_LABEL, policyKey, serviceKey } from './registry.ts';

const log = logger('registry');

export type Kind = 'Service' | 'EndpointSlice' | 'Pod';

const TYPES: Record<Kind, { apiVersion: string; type: string }> = {
  Service: { apiVersion: 'v1', type: 'V1Service' },
  EndpointSlice: { apiVersion: 'discovery.k8s.io/v1', type: 'V1EndpointSlice' },
  Pod: { apiVersion: 'v1', type: 'V1Pod' },
};

interface Meta {
  metadata?: { name?: string; namespace?: string; managedFields?: unknown; resourceVersion?: string };
}

/** `<namespace>/<name>` of any namespaced object (namespace defaults to "default"). */
export function objectKey(obj: Meta): string {
  return `${obj.metadata?.namespace || 'default'}/${obj.metadata?.name ?? ''}`;
}

/**
 * Converts raw JSON (a watch event, a YAML document) or a listed object into client-node's typed shape
 * (V1Service etc., Date timestamps), fills apiVersion/kind (list items omit them), drops managedFields,
 * defaults the namespace, and trims Pods to what the mesh reads (identity, labels, annotations, IPs) so a
 * status-only Pod update does not look like a change. The result is deeply frozen.
 */
export function normalize<T extends V1Service | V1EndpointSlice | V1Pod>(kind: Kind, raw: unknown): T {
  const { apiVersion, type } = TYPES[kind];
  const source = kind === 'Pod' ? trimPod(raw as V1Pod) : raw;
  const obj = ObjectSerializer.deserialize(source, type, '') as T & Meta;
  obj.apiVersion = apiVersion;
  obj.kind = kind;
  obj.metadata ??= {};
  obj.metadata.namespace ||= 'default';
  delete obj.metadata.managedFields;
  return deepFreeze(obj) as T;
}

function trimPod(pod: V1Pod): V1Pod {
  const m = pod.metadata ?? {};
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      labels: m.labels,
      annotations: m.annotations,
      resourceVersion: m.resourceVersion,
      deletionTimestamp: m.deletionTimestamp,
    },
    spec: pod.spec && {
      containers: [],
      serviceAccountName: pod.spec.serviceAccountName,
      nodeName: pod.spec.nodeName,
      hostNetwork: pod.spec.hostNetwork,
    },
    status: pod.status && { phase: pod.status.phase, podIP: pod.status.podIP, podIPs: pod.status.podIPs },
  };
}

type Raw = Record<string, unknown>;

/**
 * A validated policy (see validate-policy.ts) in its clean shape: only the fields Skein reads, namespace defaulted,
 * AuthorizationPolicy action defaulted to ALLOW and rules to []. Deeply frozen.
 */
export function normalizePolicy(kind: PolicyKind, raw: unknown): SkeinPolicy {
  const obj = raw as Raw & { metadata?: Raw; spec?: Raw };
  const m = obj.metadata ?? {};
  const metadata = {
    name: String(m.name ?? ''),
    namespace: typeof m.namespace === 'string' && m.namespace ? m.namespace : 'default',
    ...(typeof m.resourceVersion === 'string' ? { resourceVersion: m.resourceVersion } : {}),
  };
  const spec = obj.spec ?? {};
  const targetRefs = Array.isArray(spec.targetRefs)
    ? { targetRefs: (spec.targetRefs as Raw[]).map((r): PolicyTargetRef => ({ kind: 'Service', name: String(r.name) })) }
    : {};
  if (kind === 'PeerAuthentication') {
    const mode = (spec.mtls as Raw | undefined)?.mode === 'PERMISSIVE' ? 'PERMISSIVE' : 'STRICT';
    return deepFreeze({ apiVersion: POLICY_API_VERSION, kind, metadata, spec: { mtls: { mode }, ...targetRefs } });
  }
  const rules = Array.isArray(spec.rules) ? (spec.rules as Raw[]).map(cleanRule) : [];
  const action = spec.action === 'DENY' ? 'DENY' : 'ALLOW';
  return deepFreeze({ apiVersion: POLICY_API_VERSION, kind, metadata, spec: { ...targetRefs, action, rules } });
}

function cleanRule(rule: Raw): AuthorizationRule {
  const strings = (v: unknown) => (Array.isArray(v) ? { list: v.map(String) } : undefined);
  const out: { -readonly [K in keyof AuthorizationRule]: AuthorizationRule[K] } = {};
  if (Array.isArray(rule.from)) {
    out.from = (rule.from as Raw[]).map((f) => {
      const s = (f.source ?? {}) as Raw;
      const principals = strings(s.principals);
      const namespaces = strings(s.namespaces);
      return { source: { ...(principals ? { principals: principals.list } : {}), ...(namespaces ? { namespaces: namespaces.list } : {}) } };
    });
  }
  if (Array.isArray(rule.to)) {
    out.to = (rule.to as Raw[]).map((t) => {
      const o = (t.operation ?? {}) as Raw;
      const methods = strings(o.methods);
      const paths = strings(o.paths);
      return { operation: { ...(methods ? { methods: methods.list } : {}), ...(paths ? { paths: paths.list } : {}) } };
    });
  }
  return out;
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

const fingerprints = new WeakMap<object, string>();

/** A stable serialization of an object's content, ignoring resourceVersion (keys sorted, Dates as ISO strings). */
export function fingerprint(obj: object): string {
  let fp = fingerprints.get(obj);
  if (fp === undefined) {
    fp = JSON.stringify(obj, (key, value: unknown) => {
      if (key === 'resourceVersion' || key === 'managedFields') return undefined;
      if (value && typeof value === 'object' && !Array.isArray(value)) {
        const sorted: Record<string, unknown> = {};
        for (const k of Object.keys(value).sort()) sorted[k] = (value as Record<string, unknown>)[k];
        return sorted;
      }
      return value;
    });
    fingerprints.set(obj, fp);
  }
  return fp;
}

/** Returns `previous` when it has the same content as `next` (so identity is shared), else `next`. */
export function reuse<T extends object>(previous: T | undefined, next: T): T {
  if (previous === next) return next;
  return previous !== undefined && fingerprint(previous) === fingerprint(next) ? previous : next;
}

/** The ServiceKey an EndpointSlice belongs to, or undefined when it has no service-name label. */
export function sliceOwner(slice: V1EndpointSlice): ServiceKey | undefined {
  const name = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  return name ? serviceKey(slice.metadata?.namespace || 'default', name) : undefined;
}

/** Builds a frozen RegistryState from current objects; slices are grouped per Service and sorted by name. */
export function buildState(
  services: Iterable<V1Service>,
  slices: Iterable<V1EndpointSlice>,
  pods: Iterable<V1Pod>,
  policies: Iterable<SkeinPolicy> = [],
): RegistryState {
  const serviceMap = new Map<ServiceKey, V1Service>();
  for (const svc of services) serviceMap.set(objectKey(svc) as ServiceKey, svc);
  const grouped = new Map<ServiceKey, V1EndpointSlice[]>();
  for (const slice of slices) {
    const owner = sliceOwner(slice);
    if (!owner) continue;
    let list = grouped.get(owner);
    if (!list) grouped.set(owner, (list = []));
    list.push(slice);
  }
  const sliceMap = new Map<ServiceKey, readonly V1EndpointSlice[]>();
  for (const [key, list] of grouped) {
    list.sort((a, b) => ((a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1));
    sliceMap.set(key, Object.freeze(list));
  }
  const podMap = new Map<string, V1Pod>();
  for (const pod of pods) podMap.set(objectKey(pod), pod);
  const policyMap = new Map<string, SkeinPolicy>();
  for (const policy of policies) policyMap.set(policyKey(policy), policy);
  return Object.freeze({ services: serviceMap, slices: sliceMap, pods: podMap, policies: policyMap });
}

/** A list of callbacks; a throwing listener is logged and does not stop the others. */
export class Listeners<T> {
  private readonly list = new Set<(value: T) => void>();
  add(listener: (value: T) => void): () => void {
    const entry = (value: T): void => listener(value);
    this.list.add(entry);
    return () => {
      this.list.delete(entry);
    };
  }
  emit(value: T): void {
    for (const listener of [...this.list]) {
      try {
        listener(value);
      } catch (err) {
        log.error('registry listener threw', { error: err instanceof Error ? err.message : String(err) });
      }
    }
  }
}

export type ProblemListeners = Listeners<RegistryProblem>;
