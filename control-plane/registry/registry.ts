// The registry seam: a consistent view of Services, EndpointSlices and Pods, and which Services each change touched.
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';

/** `<namespace>/<name>` of a Service; EndpointSlices map to it through the `kubernetes.io/service-name` label. */
export type ServiceKey = `${string}/${string}`;

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export function serviceKey(namespace: string, name: string): ServiceKey {
  return `${namespace}/${name}`;
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
}

export interface RegistryChange {
  readonly state: RegistryState;
  /** The Services whose resources may differ from the previous state (added, changed, removed, or their slices/pods changed). */
  readonly changed: ReadonlySet<ServiceKey>;
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
  /** A short description for logs and /debug: `file:/path` or `kubernetes:https://…`. */
  readonly description: string;
}

export const EMPTY_STATE: RegistryState = Object.freeze({
  services: new Map(),
  slices: new Map(),
  pods: new Map(),
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
      for (const [key, slices] of after.slices) {
        if (slices.some((s) => s.endpoints?.some((e) => touchedPods.has(podKeyOf(e.targetRef, s))))) changed.add(key);
      }
    }
  }
  return changed;
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
