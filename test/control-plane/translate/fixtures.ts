// Registry states for translation and cache tests, built from plain objects shaped like Kubernetes JSON.
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import type { RegistryState, ServiceKey, SkeinPolicy } from '../../../control-plane/registry/registry.ts';
import { normalizePolicy } from '../../../control-plane/registry/objects.ts';
import { policyKey } from '../../../control-plane/registry/registry.ts';

export interface PortSpec {
  name?: string;
  port: number;
  targetPort?: number | string;
  appProtocol?: string;
  protocol?: string;
}

export function service(
  namespace: string,
  name: string,
  spec: { clusterIP?: string; ports?: PortSpec[]; type?: string; externalName?: string; publishNotReadyAddresses?: boolean; ipFamilies?: string[]; clusterIPs?: string[]; sessionAffinity?: string },
  annotations?: Record<string, string>,
): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, ...(annotations ? { annotations } : {}) },
    spec: { ports: [], ...spec },
  } as unknown as V1Service;
}

export interface EndpointSpec {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  pod?: string;
  zone?: string;
  /** The endpoint's hostname (a StatefulSet Pod's name under a headless Service). */
  hostname?: string;
}

export function slice(
  namespace: string,
  serviceName: string,
  sliceName: string,
  ports: { name?: string; port: number }[],
  endpoints: EndpointSpec[],
  addressType = 'IPv4',
): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    addressType,
    metadata: { name: sliceName, namespace, labels: { 'kubernetes.io/service-name': serviceName } },
    ports: ports.map((p) => ({ protocol: 'TCP', ...p })),
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: {
        ...(e.ready !== undefined ? { ready: e.ready } : {}),
        ...(e.serving !== undefined ? { serving: e.serving } : {}),
        ...(e.terminating !== undefined ? { terminating: e.terminating } : {}),
      },
      ...(e.pod ? { targetRef: { kind: 'Pod', name: e.pod, namespace } } : {}),
      ...(e.zone !== undefined ? { zone: e.zone } : {}),
      ...(e.hostname !== undefined ? { hostname: e.hostname } : {}),
    })),
  } as unknown as V1EndpointSlice;
}

export function pod(namespace: string, name: string, serviceAccountName?: string, annotations?: Record<string, string>): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, ...(annotations ? { annotations } : {}) },
    spec: { containers: [], ...(serviceAccountName ? { serviceAccountName } : {}) },
  } as unknown as V1Pod;
}

/** A PeerAuthentication (namespace-wide unless `targets` names Services). */
export function peerAuthentication(namespace: string, name: string, mode: string, targets?: string[]): SkeinPolicy {
  const targetRefs = targets ? { targetRefs: targets.map((t) => ({ kind: 'Service', name: t })) } : {};
  return normalizePolicy('PeerAuthentication', { metadata: { name, namespace }, spec: { mtls: { mode }, ...targetRefs } });
}

/** An AuthorizationPolicy in Istio's shape (`spec` as written in YAML). */
export function authorizationPolicy(namespace: string, name: string, spec: Record<string, unknown>): SkeinPolicy {
  return normalizePolicy('AuthorizationPolicy', { metadata: { name, namespace }, spec });
}

/** A state from lists; slices are grouped by their service-name label. */
export function registryState(
  services: V1Service[],
  slices: V1EndpointSlice[] = [],
  pods: V1Pod[] = [],
  policies: SkeinPolicy[] = [],
): RegistryState {
  const svc = new Map<ServiceKey, V1Service>();
  for (const s of services) svc.set(`${s.metadata?.namespace}/${s.metadata?.name}`, s);
  const sl = new Map<ServiceKey, V1EndpointSlice[]>();
  for (const s of slices) {
    const key: ServiceKey = `${s.metadata?.namespace}/${s.metadata?.labels?.['kubernetes.io/service-name']}`;
    sl.set(key, [...(sl.get(key) ?? []), s]);
  }
  const pd = new Map<string, V1Pod>();
  for (const p of pods) pd.set(`${p.metadata?.namespace}/${p.metadata?.name}`, p);
  return { services: svc, slices: sl, pods: pd, policies: new Map(policies.map((p) => [policyKey(p), p])) };
}
