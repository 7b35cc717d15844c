// Validates an Envoy Cluster into the sidecar's ClusterConfig (discovery type, lb policy, protocol, timeouts).
import type { Cluster__Output } from '../../proto/index.ts';
import type { ClusterConfig, EndpointConfig, LbPolicyName } from './model.ts';
import { decodeEndpoints } from './endpoints.ts';
import { durationMs, filterMetadata, type Problems, structString } from './fields.ts';
import { type ClusterSecurity, decodeClusterSecurity } from './security.ts';

/** A validated cluster plus what the xDS client needs to subscribe: the EDS name when its endpoints come from EDS. */
export interface DecodedCluster {
  readonly config: ClusterConfig;
  /** The ClusterLoadAssignment name to subscribe to (eds_cluster_config.service_name, else the cluster name). */
  readonly edsServiceName?: string;
}

const LB_POLICIES: Readonly<Record<string, LbPolicyName>> = {
  ROUND_ROBIN: 'round-robin',
  RANDOM: 'random',
  RING_HASH: 'ring-hash',
  LEAST_REQUEST: 'p2c-ewma',
};

const PROTOCOLS: Readonly<Record<string, ClusterConfig['protocol']>> = {
  http: 'http1',
  http1: 'http1',
  http2: 'http2',
  grpc: 'http2',
  tcp: 'tcp',
};

/** Envoy's default connect_timeout when the field is unset. */
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

function checkAdsSource(
  source: { config_source_specifier?: string } | null | undefined,
  path: string,
  problems: Problems,
): void {
  if (!source) problems.add(path, 'is required (ads {})');
  else if (source.config_source_specifier !== 'ads')
    problems.add(path, `${source.config_source_specifier ?? 'an empty config source'} is not supported (only ads {})`);
}

export function decodeCluster(c: Cluster__Output, version: string, problems: Problems): DecodedCluster | undefined {
  if (!c.name) problems.add('name', 'is required');
  const lbPolicy = LB_POLICIES[c.lb_policy];
  if (!lbPolicy) problems.add('lb_policy', `${c.lb_policy} is not supported`);

  let connectTimeoutMs = durationMs(c.connect_timeout, 'connect_timeout', problems) ?? DEFAULT_CONNECT_TIMEOUT_MS;
  if (c.connect_timeout && connectTimeoutMs === 0) {
    problems.add('connect_timeout', 'must be greater than 0');
    connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS;
  }

  let protocol: ClusterConfig['protocol'] = 'http1';
  let service: string | undefined;
  let security: ClusterSecurity = {};
  const meta = filterMetadata(c.metadata, 'skein');
  if (meta) {
    service = structString(meta, 'service', 'metadata.filter_metadata.skein', problems);
    security = decodeClusterSecurity(meta, 'metadata.filter_metadata.skein', problems);
    const p = structString(meta, 'protocol', 'metadata.filter_metadata.skein', problems);
    if (p !== undefined) {
      const mapped = PROTOCOLS[p];
      if (mapped) protocol = mapped;
      else problems.add('metadata.filter_metadata.skein.protocol', `${JSON.stringify(p)} is not one of http, http2, tcp`);
    }
  }

  if (c.transport_socket) problems.add('transport_socket', 'upstream TLS configured by xDS is not supported');

  let kind: ClusterConfig['kind'] = 'eds';
  let edsServiceName: string | undefined;
  let endpoints: EndpointConfig[] = [];
  let dns: ClusterConfig['dns'];
  // `type` sits in a oneof: unset means Envoy's default, STATIC.
  switch (c.type ?? 'STATIC') {
    case 'EDS':
      checkAdsSource(c.eds_cluster_config?.eds_config, 'eds_cluster_config.eds_config', problems);
      edsServiceName = c.eds_cluster_config?.service_name || c.name;
      if (c.load_assignment) problems.add('load_assignment', 'must not be set on an EDS cluster');
      break;
    case 'STATIC':
      if (!c.load_assignment) problems.add('load_assignment', 'is required for a STATIC cluster');
      else endpoints = decodeEndpoints(c.load_assignment, 'load_assignment.', problems);
      break;
    case 'LOGICAL_DNS':
    case 'STRICT_DNS': {
      kind = 'dns';
      if (c.dns_lookup_family === 'V6_ONLY' || c.dns_lookup_family === 'ALL')
        problems.add('dns_lookup_family', `${c.dns_lookup_family} is not supported`);
      if (!c.load_assignment) {
        problems.add('load_assignment', `is required for a ${c.type} cluster`);
        break;
      }
      endpoints = decodeEndpoints(c.load_assignment, 'load_assignment.', problems, true);
      const count = c.load_assignment.endpoints.reduce((n, l) => n + l.lb_endpoints.length, 0);
      if (count !== 1) problems.add('load_assignment', `a ${c.type} cluster needs exactly one endpoint, got ${count}`);
      else if (endpoints[0]) dns = { host: endpoints[0].address, port: endpoints[0].port };
      endpoints = [];
      break;
    }
    default:
      problems.add('type', `${c.type ?? 'unset'} is not supported (EDS, STATIC, LOGICAL_DNS, STRICT_DNS)`);
  }

  if (!problems.empty || !lbPolicy) return undefined;
  const config: ClusterConfig = {
    name: c.name,
    version,
    kind,
    lbPolicy,
    connectTimeoutMs,
    protocol,
    ...(dns ? { dns } : {}),
    endpoints,
    endpointsVersion: edsServiceName === undefined ? version : '',
    ...(service !== undefined ? { service } : {}),
    ...security,
  };
  return edsServiceName === undefined ? { config } : { config, edsServiceName };
}
