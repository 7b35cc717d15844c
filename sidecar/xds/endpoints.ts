// Validates an Envoy ClusterLoadAssignment into the sidecar's endpoint list (weights, health, skein metadata).
import type { ClusterLoadAssignment__Output } from '../../proto/index.ts';
import type { EndpointConfig, EndpointHealth } from './model.ts';
import { filterMetadata, isIpAddress, isPort, type Problems, structNumber, structString } from './fields.ts';

type Locality = ClusterLoadAssignment__Output['endpoints'][number];
type LbEndpoint = Locality['lb_endpoints'][number];

/** EDS carries the same health states as Envoy; only HEALTHY/UNKNOWN take traffic, DRAINING keeps in-flight work. */
export function mapHealth(status: string): EndpointHealth {
  if (status === 'HEALTHY' || status === 'UNKNOWN') return 'healthy';
  if (status === 'DRAINING') return 'draining';
  return 'unhealthy';
}

function decodeLbEndpoint(
  ep: LbEndpoint,
  path: string,
  problems: Problems,
  dnsAllowed: boolean,
): EndpointConfig | undefined {
  const before = problems.list.length;
  const sa = ep.endpoint?.address?.socket_address;
  if (!ep.endpoint) {
    problems.add(`${path}.endpoint`, 'is required');
  } else if (!sa) {
    problems.add(`${path}.endpoint.address.socket_address`, 'is required');
  } else {
    const addrPath = `${path}.endpoint.address.socket_address`;
    if (sa.protocol !== 'TCP') problems.add(`${addrPath}.protocol`, `${sa.protocol} is not supported (TCP only)`);
    if (sa.resolver_name) problems.add(`${addrPath}.resolver_name`, 'custom resolvers are not supported');
    if (!sa.address) problems.add(`${addrPath}.address`, 'is required');
    else if (!dnsAllowed && !isIpAddress(sa.address))
      problems.add(`${addrPath}.address`, `${JSON.stringify(sa.address)} is not an IP address`);
    if (sa.port_specifier === 'named_port') problems.add(`${addrPath}.named_port`, 'named ports are not supported');
    else if (!isPort(sa.port_value)) problems.add(`${addrPath}.port_value`, 'must be 1-65535');
  }
  let weight = 1;
  if (ep.load_balancing_weight) {
    if (ep.load_balancing_weight.value < 1) problems.add(`${path}.load_balancing_weight`, 'must be at least 1');
    else weight = ep.load_balancing_weight.value;
  }
  const meta = filterMetadata(ep.metadata, 'skein');
  const metaPath = `${path}.metadata.filter_metadata.skein`;
  let pod: string | undefined;
  let namespace: string | undefined;
  let serviceAccount: string | undefined;
  let inboundPort: number | undefined;
  let proxyProtocol: 'outside-tls' | 'none' | undefined;
  if (meta) {
    pod = structString(meta, 'pod', metaPath, problems);
    namespace = structString(meta, 'namespace', metaPath, problems);
    serviceAccount = structString(meta, 'service_account', metaPath, problems);
    inboundPort = structNumber(meta, 'inbound_port', metaPath, problems);
    if (inboundPort !== undefined && !isPort(inboundPort)) {
      problems.add(`${metaPath}.inbound_port`, 'must be 1-65535');
      inboundPort = undefined;
    }
    const pp = structString(meta, 'proxy_protocol', metaPath, problems);
    if (pp === 'outside-tls' || pp === 'none') proxyProtocol = pp;
    else if (pp !== undefined && pp !== 'inside-tls') problems.add(`${metaPath}.proxy_protocol`, `${JSON.stringify(pp)} is not one of inside-tls, outside-tls, none`);
  }
  if (problems.list.length > before || !sa) return undefined;
  return {
    address: sa.address,
    port: sa.port_value ?? 0,
    weight,
    health: mapHealth(ep.health_status),
    ...(inboundPort !== undefined ? { inboundPort } : {}),
    ...(proxyProtocol !== undefined ? { proxyProtocol } : {}),
    ...(pod !== undefined ? { pod } : {}),
    ...(namespace !== undefined ? { namespace } : {}),
    ...(serviceAccount !== undefined ? { serviceAccount } : {}),
  };
}

/**
 * The endpoints of a ClusterLoadAssignment, problems reported under `pathPrefix` (empty for EDS, `load_assignment.`
 * inside a Cluster). `dnsAllowed` lets host names through (LOGICAL_DNS clusters).
 */
export function decodeEndpoints(
  cla: ClusterLoadAssignment__Output,
  pathPrefix: string,
  problems: Problems,
  dnsAllowed = false,
): EndpointConfig[] {
  const out: EndpointConfig[] = [];
  cla.endpoints.forEach((locality, i) => {
    const lpath = `${pathPrefix}endpoints[${i}]`;
    if (locality.priority !== 0) {
      problems.add(`${lpath}.priority`, `priority ${locality.priority} is not supported (only 0)`);
    }
    // Zone weights are checked but not used, as Envoy does without locality_weighted_lb_config: endpoints are
    // balanced by their own weights across zones (the control plane sends zone weights for gRPC's xDS clients).
    if (locality.load_balancing_weight && locality.load_balancing_weight.value < 1) {
      problems.add(`${lpath}.load_balancing_weight`, 'must be at least 1');
    }
    locality.lb_endpoints.forEach((ep, j) => {
      const decoded = decodeLbEndpoint(ep, `${lpath}.lb_endpoints[${j}]`, problems, dnsAllowed);
      if (decoded) out.push(decoded);
    });
  });
  // A copy of exactly its length: `push` leaves room for 17 elements, and a sidecar keeps one list per cluster.
  return out.slice();
}
