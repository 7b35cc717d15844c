// CDS: one Cluster per Service port; EDS-backed for ordinary and headless Services, LOGICAL_DNS for ExternalName.
import type { AnyMessage, Cluster, HttpProtocolOptions } from '../../proto/index.ts';
import { EXTENSION_TYPE_URL, pack, PROTOCOL_OPTIONS_KEY } from '../../proto/index.ts';
import type { LbPolicyAnnotation } from './annotations.ts';
import { durationOf } from './annotations.ts';
import type { PortProtocol } from './names.ts';
import type { ServiceSecurity } from './security.ts';
import type { StructInput } from './values.ts';
import { ADS_V3, skeinMetadata } from './values.ts';

export const DEFAULT_CONNECT_TIMEOUT_MS = 1000;

type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RING_HASH' | 'RANDOM';

/** The envoy-scope policy: LEAST_REQUEST unless annotated (the sidecar runs P2C peak-EWMA for it). */
export function envoyLbPolicy(annotation: LbPolicyAnnotation | undefined): LbPolicy {
  switch (annotation) {
    case 'round-robin':
      return 'ROUND_ROBIN';
    case 'random':
      return 'RANDOM';
    case 'ring-hash':
      return 'RING_HASH';
    default:
      return 'LEAST_REQUEST';
  }
}

/** grpc-js-xds NACKs policies it does not support, so proxyless clients get ROUND_ROBIN unless RING_HASH. */
export function proxylessLbPolicy(annotation: LbPolicyAnnotation | undefined): LbPolicy {
  return annotation === 'ring-hash' ? 'RING_HASH' : 'ROUND_ROBIN';
}

export interface ClusterInput {
  readonly name: string;
  /** `<ns>/<name>` of the Service. */
  readonly service: string;
  readonly port: number;
  readonly protocol: PortProtocol;
  readonly connectTimeoutMs: number;
  readonly lbPolicy: LbPolicy;
  /** Set for ExternalName Services: the DNS name to resolve. */
  readonly externalName?: string | undefined;
  /** Envoy scope only: the destination's identities, inbound mTLS mode and authorization, added to the metadata. */
  readonly security?: ServiceSecurity | undefined;
  /**
   * Envoy scope only: state an `http2` port's upstream protocol in typed_extension_protocol_options, as Envoy reads it
   * (the metadata's `protocol` is Skein's own; Envoy ignores it and would speak HTTP/1.1). Proxyless gRPC clients
   * always speak HTTP/2 and leave the field out.
   */
  readonly protocolOptions?: boolean | undefined;
}

let http2Options: AnyMessage | undefined;

/** `HttpProtocolOptions { explicit_http_config { http2_protocol_options {} } }`, packed once (Istio's gRPC/HTTP2 form). */
export function http2ProtocolOptions(): AnyMessage {
  if (!http2Options) {
    const options: HttpProtocolOptions = { explicit_http_config: { http2_protocol_options: {} } };
    http2Options = pack(EXTENSION_TYPE_URL.httpProtocolOptions, options);
  }
  return http2Options;
}

/** `identities`, `mtls_mode` and (when a policy applies) `authz`, as `filter_metadata.skein` carries them. */
export function securityMetadata(security: ServiceSecurity): Record<string, StructInput | undefined> {
  return {
    identities: security.identities,
    mtls_mode: security.mtlsMode,
    authz: security.authz as StructInput | undefined,
  };
}

/** A Cluster message (plain object, Envoy field names) ready for `pack`. */
export function buildCluster(input: ClusterInput): Cluster {
  const common: Cluster = {
    name: input.name,
    connect_timeout: durationOf(input.connectTimeoutMs),
    lb_policy: input.lbPolicy,
    metadata: skeinMetadata({
      protocol: input.protocol,
      service: input.service,
      port: input.port,
      ...(input.security ? securityMetadata(input.security) : {}),
    }),
  };
  if (input.lbPolicy === 'RING_HASH') common.ring_hash_lb_config = {};
  if (input.protocolOptions && input.protocol === 'http2') {
    common.typed_extension_protocol_options = { [PROTOCOL_OPTIONS_KEY.http]: http2ProtocolOptions() };
  }
  if (input.externalName !== undefined) {
    return {
      ...common,
      type: 'LOGICAL_DNS',
      dns_lookup_family: 'V4_PREFERRED',
      load_assignment: {
        cluster_name: input.name,
        endpoints: [
          {
            locality: { zone: '' },
            load_balancing_weight: { value: 1 },
            priority: 0,
            lb_endpoints: [
              {
                endpoint: { address: { socket_address: { address: input.externalName, port_value: input.port } } },
                health_status: 'HEALTHY',
              },
            ],
          },
        ],
      },
    };
  }
  return {
    ...common,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS_V3, service_name: input.name },
  };
}
