// The sidecar's validated view of its xDS config: what the xDS client produces and the data path consumes.
import type { AuthzOperation, AuthzSource } from '../../proto/index.ts';

/** How a cluster picks an endpoint. Envoy's LEAST_REQUEST maps to p2c-ewma (power of two choices on peak EWMA latency). */
export type LbPolicyName = 'round-robin' | 'random' | 'ring-hash' | 'p2c-ewma';

export type EndpointHealth = 'healthy' | 'draining' | 'unhealthy';

export interface EndpointConfig {
  /** The workload's own address (pod IP and target port), as EDS names it. */
  readonly address: string;
  readonly port: number;
  /** The endpoint's EDS load_balancing_weight, at least 1 (zone weights are not used, as in Envoy by default). */
  readonly weight: number;
  readonly health: EndpointHealth;
  /** Set when the endpoint runs a Skein sidecar: connect to address:inboundPort and tell it `port` (PROXY protocol v2). */
  readonly inboundPort?: number;
  /** Where the PROXY v2 header goes for this peer (metadata skein.proxy_protocol); unset: inside the TLS stream. */
  readonly proxyProtocol?: 'outside-tls' | 'none';
  readonly pod?: string;
  readonly namespace?: string;
  readonly serviceAccount?: string;
}

export interface ClusterConfig {
  /** `outbound|<port>||<fqdn>`. */
  readonly name: string;
  readonly version: string;
  readonly kind: 'eds' | 'dns';
  readonly lbPolicy: LbPolicyName;
  readonly connectTimeoutMs: number;
  /** What the upstream speaks; 'tcp' clusters are used by TCP listeners only. */
  readonly protocol: 'http1' | 'http2' | 'tcp';
  /** For dns clusters (ExternalName): the host and port to resolve. */
  readonly dns?: { readonly host: string; readonly port: number };
  /** Filled from EDS (or the cluster's own load_assignment); empty until EDS arrives. */
  readonly endpoints: readonly EndpointConfig[];
  readonly endpointsVersion: string;
  /** `<ns>/<name>` of the Service this cluster is for (metadata skein.service); used in logs and metric labels. */
  readonly service?: string;
  /**
   * SPIFFE IDs the outbound side accepts from this cluster's peer sidecars (metadata skein.identities); empty or
   * absent: any ID of our trust domain.
   */
  readonly identities?: readonly string[];
  /** What the inbound side of this Service's pods accepts (metadata skein.mtls_mode); absent means STRICT. */
  readonly mtlsMode?: MtlsMode;
  /** The Service's authorization policy (metadata skein.authz); absent when no policy applies. */
  readonly authz?: AuthzPolicy;
}

export type MtlsMode = 'STRICT' | 'PERMISSIVE';

export type { AuthzOperation, AuthzSource };

/** An empty or absent list matches anything. */
export interface AuthzRule {
  readonly from: readonly AuthzSource[];
  readonly to: readonly AuthzOperation[];
}

/** Istio semantics: any deny rule matching denies; else when `allow` is present one of its rules must match. */
export interface AuthzPolicy {
  readonly deny: readonly AuthzRule[];
  readonly allow?: readonly AuthzRule[];
}

export type PathMatch =
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'segment-prefix'; readonly value: string };

export interface HeaderMatch {
  readonly name: string;
  readonly present?: boolean;
  readonly exact?: string;
  readonly prefix?: string;
  readonly invert: boolean;
}

export interface WeightedTarget {
  readonly cluster: string;
  readonly weight: number;
}

export type RouteAction =
  | {
      readonly kind: 'forward';
      readonly targets: readonly WeightedTarget[];
      readonly totalWeight: number;
      readonly timeoutMs?: number;
      readonly prefixRewrite?: string;
      readonly hashHeader?: string;
      /** Ring hash on the caller's address (Kubernetes `sessionAffinity: ClientIP`): one endpoint per client pod. */
      readonly hashSourceIp?: boolean;
      readonly retry?: { readonly retryOn: readonly string[]; readonly numRetries: number; readonly perTryTimeoutMs?: number };
    }
  | { readonly kind: 'direct'; readonly status: number; readonly body: string };

export interface RouteConfig {
  readonly name: string;
  readonly path: PathMatch;
  readonly caseSensitive: boolean;
  readonly headers: readonly HeaderMatch[];
  readonly action: RouteAction;
}

export interface VirtualHostConfig {
  readonly name: string;
  /** Lower-cased; may hold a port (`name.ns:8080`) or a leading/trailing wildcard (`*.example.com`, `*`). */
  readonly domains: readonly string[];
  readonly routes: readonly RouteConfig[];
}

export interface RouteTableConfig {
  readonly name: string;
  readonly version: string;
  readonly virtualHosts: readonly VirtualHostConfig[];
  /**
   * As received over RDS: the virtual hosts come through VHDS (VirtualHost resources `<name>/<vhost name>`). In a
   * MeshConfig the table is already assembled: `virtualHosts` holds them, sorted by name.
   */
  readonly vhds?: boolean;
}

export interface HttpListenerConfig {
  readonly kind: 'http';
  readonly name: string;
  readonly version: string;
  readonly address: string;
  readonly port: number;
  /** RDS name (looked up in MeshConfig.routes) or an inline table. */
  readonly routeConfigName: string;
  readonly inlineRoutes?: RouteTableConfig;
  readonly requestHeadersTimeoutMs?: number;
  /** Unset: Envoy's default, 5 min; 0: off. */
  readonly streamIdleTimeoutMs?: number;
  readonly maxRequestHeadersKb?: number;
}

export interface TcpListenerConfig {
  readonly kind: 'tcp';
  readonly name: string;
  readonly version: string;
  /** The Service's virtual IP (or 0.0.0.0 when it has none) and port: matched against the original destination. */
  readonly address: string;
  readonly port: number;
  readonly cluster: string;
  readonly idleTimeoutMs?: number;
  /** Ring hash on the caller's address (Kubernetes `sessionAffinity: ClientIP`): one endpoint per client pod. */
  readonly hashSourceIp?: boolean;
}

export type ListenerConfig = HttpListenerConfig | TcpListenerConfig;

/** Everything the data path needs, published whole (immutable) each time any part changes. */
export interface MeshConfig {
  readonly clusters: ReadonlyMap<string, ClusterConfig>;
  readonly listeners: ReadonlyMap<string, ListenerConfig>;
  readonly routes: ReadonlyMap<string, RouteTableConfig>;
  /** Per type URL, the version_info last ACKed. */
  readonly versions: Readonly<Record<string, string>>;
}
