// Type URLs of the xDS resources Skein serves, in the order ADS must deliver them (CDS, EDS, LDS, RDS).

export const TYPE_URL = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
} as const;

export type ResourceKind = keyof typeof TYPE_URL;
export type TypeUrl = (typeof TYPE_URL)[ResourceKind];

/** Delivery order that avoids warming stalls: clusters before their endpoints, listeners before their routes. */
export const ADS_ORDER: readonly TypeUrl[] = [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route];

/** Type URLs of the filter and protocol configs carried inside resources as Any. */
export const EXTENSION_TYPE_URL = {
  httpConnectionManager:
    'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  tcpProxy: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  httpProtocolOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
} as const;

/**
 * Keys of Cluster.typed_extension_protocol_options: the extension name Envoy looks the protocol options up by (Envoy
 * checks the packed Any is that extension's config type).
 */
export const PROTOCOL_OPTIONS_KEY = {
  http: 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
} as const;

const KIND_BY_URL = new Map<string, ResourceKind>(
  Object.entries(TYPE_URL).map(([kind, url]) => [url, kind as ResourceKind]),
);

export function kindOf(typeUrl: string): ResourceKind | undefined {
  return KIND_BY_URL.get(typeUrl);
}

export function shortName(typeUrl: string): string {
  const kind = kindOf(typeUrl);
  return kind ? { cluster: 'CDS', endpoint: 'EDS', listener: 'LDS', route: 'RDS' }[kind] : typeUrl;
}
