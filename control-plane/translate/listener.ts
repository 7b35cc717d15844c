// LDS: the envoy scope's virtualOutbound and per-VIP TCP listeners, and proxyless gRPC api_listeners.
import type { HttpConnectionManager, Listener, TcpProxy } from '../../proto/index.ts';
import { EXTENSION_TYPE_URL, pack } from '../../proto/index.ts';
import { outboundRouteName } from './names.ts';
import { ADS_V3 } from './values.ts';

export const VIRTUAL_OUTBOUND = 'virtualOutbound';
export const OUTBOUND_CAPTURE_PORT = 15001;
export const HCM_FILTER = 'envoy.filters.network.http_connection_manager';
export const TCP_PROXY_FILTER = 'envoy.filters.network.tcp_proxy';
export const ROUTER_FILTER = 'envoy.filters.http.router';

function routerFilter() {
  return { name: ROUTER_FILTER, typed_config: pack(EXTENSION_TYPE_URL.router, {}) };
}

/** The outbound capture listener of a namespace's proxies: HTTP through the `outbound/<ns>` route table. */
export function buildVirtualOutbound(namespace: string): Listener {
  const hcm: HttpConnectionManager = {
    stat_prefix: 'outbound',
    codec_type: 'AUTO',
    rds: { config_source: ADS_V3, route_config_name: outboundRouteName(namespace) },
    http_filters: [routerFilter()],
    http_protocol_options: { allow_absolute_url: { value: true } },
    request_headers_timeout: { seconds: 10, nanos: 0 },
    stream_idle_timeout: { seconds: 300, nanos: 0 },
    max_request_headers_kb: { value: 60 },
  };
  return {
    name: VIRTUAL_OUTBOUND,
    address: { socket_address: { address: '0.0.0.0', port_value: OUTBOUND_CAPTURE_PORT } },
    traffic_direction: 'OUTBOUND',
    // Hands captured connections to the listener of their original destination (the TCP listeners do not bind).
    use_original_dst: { value: true },
    filter_chains: [
      { filters: [{ name: HCM_FILTER, typed_config: pack(EXTENSION_TYPE_URL.httpConnectionManager, hcm) }] },
    ],
  };
}

/**
 * A TCP Service port on its cluster IP, reached through interception (not bound); `hashSourceIp` (sessionAffinity:
 * ClientIP) makes the caller's address its ring-hash key.
 */
export function buildTcpListener(name: string, clusterIP: string, port: number, cluster: string, hashSourceIp = false): Listener {
  const proxy: TcpProxy = { stat_prefix: cluster, cluster, ...(hashSourceIp ? { hash_policy: [{ source_ip: {} }] } : {}) };
  return {
    name,
    address: { socket_address: { address: clusterIP, port_value: port } },
    bind_to_port: { value: false },
    traffic_direction: 'OUTBOUND',
    filter_chains: [{ filters: [{ name: TCP_PROXY_FILTER, typed_config: pack(EXTENSION_TYPE_URL.tcpProxy, proxy) }] }],
  };
}

/** What a gRPC client dialing `xds:///<fqdn>:<port>` asks for: an api_listener naming its route table. */
export function buildProxylessListener(name: string): Listener {
  const hcm: HttpConnectionManager = {
    // gRPC ignores stat_prefix, but Envoy's rules require one (min_len 1) of every HttpConnectionManager.
    stat_prefix: name,
    rds: { config_source: ADS_V3, route_config_name: name },
    http_filters: [routerFilter()],
  };
  return { name, api_listener: { api_listener: pack(EXTENSION_TYPE_URL.httpConnectionManager, hcm) } };
}
