// Type URLs of the xDS resources Skein serves, in the order ADS must deliver them (CDS, EDS, LDS, RDS, VHDS).

export const TYPE_URL = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  /** VHDS: a route table's virtual hosts as separate resources, served only to delta ADS clients that declare VHDS_FEATURE. */
  virtualHost: 'type.googleapis.com/envoy.config.route.v3.VirtualHost',
} as const;

export type ResourceKind = keyof typeof TYPE_URL;
export type TypeUrl = (typeof TYPE_URL)[ResourceKind];

/** Delivery order that avoids warming stalls: clusters before their endpoints, listeners before their routes (and their virtual hosts). */
export const ADS_ORDER: readonly TypeUrl[] = [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route, TYPE_URL.virtualHost];

/**
 * The node.client_features entry by which a delta ADS client asks for VHDS: its RouteConfigurations then come with
 * `vhds` and no `virtual_hosts`, and each virtual host as a VirtualHost resource `<route configuration name>/<vhost name>`.
 */
export const VHDS_FEATURE = 'skein.vhds';

/** The VHDS resource name of a virtual host in a route table (Envoy's `<route configuration name>/<host>`). */
export function vhdsResourceName(routeConfigName: string, vhostName: string): string {
  return `${routeConfigName}/${vhostName}`;
}

/** The route table and vhost name of a VHDS resource name (split at the last `/`: a host holds none), or undefined. */
export function splitVhdsResourceName(name: string): { readonly routeConfigName: string; readonly vhostName: string } | undefined {
  const at = name.lastIndexOf('/');
  if (at <= 0 || at === name.length - 1) return undefined;
  return { routeConfigName: name.slice(0, at), vhostName: name.slice(at + 1) };
}

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
  return kind ? { cluster: 'CDS', endpoint: 'EDS', listener: 'LDS', route: 'RDS', virtualHost: 'VHDS' }[kind] : typeUrl;
}
