// EDS: a ClusterLoadAssignment per Service port, merged from every EndpointSlice with Kubernetes' endpoint semantics.
import type { V1EndpointSlice, V1Pod, V1ServicePort } from '@kubernetes/client-node';
import type { ClusterLoadAssignment, LbEndpoint } from '../../proto/index.ts';
import type { AnnotationError } from './annotations.ts';
import { parseInboundPort, parseProxyProtocol } from './annotations.ts';
import { skeinMetadata } from './values.ts';

export type Health = 'HEALTHY' | 'DRAINING' | 'UNHEALTHY';

const HEALTH_RANK: Readonly<Record<Health, number>> = { HEALTHY: 0, DRAINING: 1, UNHEALTHY: 2 };

/**
 * Kubernetes endpoint conditions to Envoy health: ready (or unset, or publishNotReadyAddresses) is HEALTHY;
 * serving while terminating is DRAINING (finish, send nothing new; HEALTHY when no endpoint is ready, below);
 * anything else is UNHEALTHY.
 */
export function endpointHealth(
  conditions: { ready?: boolean; serving?: boolean; terminating?: boolean } | undefined,
  publishNotReadyAddresses: boolean,
): Health {
  if (publishNotReadyAddresses || conditions?.ready !== false) return 'HEALTHY';
  if (conditions.serving === true && conditions.terminating === true) return 'DRAINING';
  return 'UNHEALTHY';
}

/** The port a slice's endpoints take traffic on for this Service port: matched by the Service port's name. */
export function slicePortFor(slice: V1EndpointSlice, servicePort: V1ServicePort): number | undefined {
  const name = servicePort.name ?? '';
  const match = (slice.ports ?? []).find((p) => (p.name ?? '') === name && (p.protocol ?? 'TCP') === 'TCP');
  const port = match?.port;
  return port !== undefined && port !== null && port > 0 && port <= 65535 ? port : undefined;
}

interface Collected {
  address: string;
  port: number;
  zone: string;
  health: Health;
  podKey?: string;
}

export interface EndpointsInput {
  readonly clusterName: string;
  readonly servicePort: V1ServicePort;
  readonly slices: readonly V1EndpointSlice[];
  readonly pods: ReadonlyMap<string, V1Pod>;
  readonly publishNotReadyAddresses: boolean;
  /** Only slices of this address type count (a dual-stack Service's other family is left out); unset: both. */
  readonly addressFamily?: 'IPv4' | 'IPv6';
  /** See TranslateOptions.holdEndpointsWithoutPod. */
  readonly holdEndpointsWithoutPod?: boolean;
}

/**
 * An IPv6 address in RFC 5952's form (lower case, zeros compressed), as the WHATWG URL parser writes it, so that
 * `2001:DB8::1` and `2001:db8:0::1` in two slices are one endpoint; IPv4 and anything else unchanged.
 */
function canonicalIP(address: string): string {
  if (!address.includes(':')) return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

/** Builds the CLA; bad pod annotations are returned as errors and the endpoint is kept without them. */
export function buildLoadAssignment(input: EndpointsInput): { cla: ClusterLoadAssignment; errors: AnnotationError[] } {
  const byAddress = new Map<string, Collected>();
  for (const slice of input.slices) {
    if (slice.addressType === 'FQDN') continue; // no semantics defined by Kubernetes; kube-proxy ignores them too
    if (input.addressFamily !== undefined && slice.addressType !== input.addressFamily) continue;
    const port = slicePortFor(slice, input.servicePort);
    if (port === undefined) continue;
    for (const ep of slice.endpoints ?? []) {
      const given = ep.addresses?.[0];
      if (!given) continue;
      const address = canonicalIP(given);
      const health = endpointHealth(ep.conditions, input.publishNotReadyAddresses);
      const key = `${address}|${port}`;
      const previous = byAddress.get(key);
      // The same endpoint can sit in two slices while the controller moves it: keep its best state.
      if (previous && HEALTH_RANK[previous.health] <= HEALTH_RANK[health]) continue;
      const ref = ep.targetRef;
      const podKey =
        ref?.name && (ref.kind ?? 'Pod') === 'Pod'
          ? `${ref.namespace ?? slice.metadata?.namespace ?? 'default'}/${ref.name}`
          : undefined;
      // A better-state duplicate without a Pod reference keeps the Pod the other one named (its identity, inbound port).
      const pod = podKey ?? previous?.podKey;
      byAddress.set(key, { address, port, zone: ep.zone ?? '', health, ...(pod ? { podKey: pod } : {}) });
    }
  }

  const errors: AnnotationError[] = [];
  const zones = new Map<string, LbEndpoint[]>();
  const sorted = [...byAddress.values()].sort((a, b) => compareAddress(a.address, b.address) || a.port - b.port);
  for (const ep of sorted) {
    const lb: LbEndpoint = {
      endpoint: { address: { socket_address: { address: ep.address, port_value: ep.port } } },
      health_status: ep.health,
    };
    if (ep.podKey) {
      const slash = ep.podKey.indexOf('/');
      const namespace = ep.podKey.slice(0, slash);
      const podName = ep.podKey.slice(slash + 1);
      const pod = input.pods.get(ep.podKey);
      if (pod === undefined && input.holdEndpointsWithoutPod === true) lb.health_status = 'UNHEALTHY';
      const inbound = parseInboundPort(pod?.metadata, `Pod ${ep.podKey}`);
      if (inbound !== undefined && typeof inbound !== 'number') errors.push(inbound);
      const proxyProtocol = inbound === undefined ? undefined : parseProxyProtocol(pod?.metadata, `Pod ${ep.podKey}`);
      if (proxyProtocol !== undefined && typeof proxyProtocol !== 'string') errors.push(proxyProtocol);
      lb.metadata = skeinMetadata({
        pod: podName,
        namespace,
        service_account: pod?.spec?.serviceAccountName || undefined,
        inbound_port: typeof inbound === 'number' ? inbound : undefined,
        proxy_protocol: typeof proxyProtocol === 'string' ? proxyProtocol : undefined,
      });
    }
    const list = zones.get(ep.zone);
    if (list) list.push(lb);
    else zones.set(ep.zone, [lb]);
  }

  // kube-proxy's fallback: with no ready endpoint left, the serving-terminating ones take new connections (a
  // one-replica Deployment rolling keeps answering). Sent as HEALTHY so that every client does the same: gRPC's xDS
  // clients drop DRAINING endpoints, and Envoy would only reach them in panic mode.
  const all = [...zones.values()].flat();
  if (!all.some((ep) => ep.health_status === 'HEALTHY')) {
    for (const ep of all) if (ep.health_status === 'DRAINING') ep.health_status = 'HEALTHY';
  }
  const endpoints = [...zones.keys()].sort().map((zone) => {
    const lbEndpoints = zones.get(zone) ?? [];
    return {
      locality: { zone },
      lb_endpoints: lbEndpoints,
      load_balancing_weight: { value: localityWeight(lbEndpoints) },
      priority: 0,
    };
  });
  return { cla: { cluster_name: input.clusterName, endpoints }, errors };
}

/**
 * A zone's weight is the number of its endpoints taking traffic (at least 1, as xDS requires), as Istio sends it:
 * gRPC's xDS clients pick a zone by weight first, so equal weights would give a zone's lone replica as much as
 * a whole zone of them. Envoy ignores zone weights unless told to weigh localities; Skein's sidecar ignores them.
 */
function localityWeight(endpoints: readonly LbEndpoint[]): number {
  let n = 0;
  for (const ep of endpoints) if (ep.health_status === 'HEALTHY') n++;
  return Math.max(1, n);
}

/** Orders IPv4 numerically (10.0.0.9 before 10.0.0.10), then anything else as text. */
function compareAddress(a: string, b: string): number {
  const pa = ipv4Parts(a);
  const pb = ipv4Parts(b);
  if (pa && pb) {
    for (let i = 0; i < 4; i++) if (pa[i] !== pb[i]) return (pa[i] ?? 0) - (pb[i] ?? 0);
    return 0;
  }
  if (pa) return -1;
  if (pb) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function ipv4Parts(ip: string): number[] | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  const nums = parts.map(Number);
  return nums.every((n) => Number.isInteger(n) && n >= 0 && n <= 255) ? nums : undefined;
}
