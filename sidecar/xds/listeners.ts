// Validates an Envoy Listener (one filter chain: HTTP connection manager or TCP proxy) into the sidecar's ListenerConfig.
import {
  EXTENSION_TYPE_URL,
  type HttpConnectionManager__Output,
  type Listener__Output,
  type TcpProxy__Output,
  unpack,
} from '../../proto/index.ts';
import type { ListenerConfig } from './model.ts';
import { durationMs, isIpAddress, isPort, type Problems, quote } from './fields.ts';
import { decodeRouteConfiguration } from './routes.ts';

type Filter = Listener__Output['filter_chains'][number]['filters'][number];

function unpackFilter<T>(filter: Filter, path: string, problems: Problems): T | undefined {
  try {
    return unpack<T>(filter.typed_config as { type_url: string; value: Uint8Array });
  } catch (err) {
    problems.add(`${path}.typed_config`, `cannot decode: ${(err as Error).message}`);
    return undefined;
  }
}

function decodeHcm(
  hcm: HttpConnectionManager__Output,
  base: { name: string; version: string; address: string; port: number },
  path: string,
  problems: Problems,
): ListenerConfig {
  if (hcm.codec_type === 'HTTP3') problems.add(`${path}.codec_type`, 'HTTP3 is not supported');
  let routeConfigName = '';
  let inlineRoutes;
  if (hcm.route_specifier === 'rds' && hcm.rds) {
    const src = hcm.rds.config_source;
    if (!src || src.config_source_specifier !== 'ads')
      problems.add(`${path}.rds.config_source`, 'only ads {} is supported');
    if (!hcm.rds.route_config_name) problems.add(`${path}.rds.route_config_name`, 'is required');
    routeConfigName = hcm.rds.route_config_name;
  } else if (hcm.route_specifier === 'route_config' && hcm.route_config) {
    inlineRoutes = decodeRouteConfiguration(hcm.route_config, base.version, problems, `${path}.route_config.`);
    routeConfigName = hcm.route_config.name || `${base.name}/inline`;
    inlineRoutes = { ...inlineRoutes, name: routeConfigName };
  } else {
    problems.add(path, 'one of rds, route_config is required');
  }
  if (hcm.http_filters.length === 0) problems.add(`${path}.http_filters`, 'must end with envoy.filters.http.router');
  hcm.http_filters.forEach((f, i) => {
    const isRouter = f.typed_config
      ? f.typed_config.type_url === EXTENSION_TYPE_URL.router
      : f.name === 'envoy.filters.http.router';
    const last = i === hcm.http_filters.length - 1;
    if (last && !isRouter) problems.add(`${path}.http_filters[${i}]`, `${quote(f.name)}: the last filter must be the router`);
    if (!last && isRouter) problems.add(`${path}.http_filters[${i}]`, 'the router must be the last filter');
    if (!last && !isRouter && !f.is_optional)
      problems.add(`${path}.http_filters[${i}]`, `${quote(f.name)} is not supported (mark it is_optional to skip it)`);
  });
  if (durationMs(hcm.request_timeout, `${path}.request_timeout`, problems))
    problems.add(`${path}.request_timeout`, 'is not supported (use a route timeout)');
  const requestHeadersTimeoutMs = durationMs(hcm.request_headers_timeout, `${path}.request_headers_timeout`, problems);
  const streamIdleTimeoutMs = durationMs(hcm.stream_idle_timeout, `${path}.stream_idle_timeout`, problems);
  const maxRequestHeadersKb = hcm.max_request_headers_kb?.value;
  if (maxRequestHeadersKb !== undefined && (maxRequestHeadersKb < 1 || maxRequestHeadersKb > 8192))
    problems.add(`${path}.max_request_headers_kb`, 'must be 1-8192');
  return {
    kind: 'http',
    ...base,
    routeConfigName,
    ...(inlineRoutes ? { inlineRoutes } : {}),
    ...(requestHeadersTimeoutMs ? { requestHeadersTimeoutMs } : {}),
    ...(streamIdleTimeoutMs !== undefined ? { streamIdleTimeoutMs } : {}),
    ...(maxRequestHeadersKb ? { maxRequestHeadersKb } : {}),
  };
}

function decodeTcp(
  tcp: TcpProxy__Output,
  base: { name: string; version: string; address: string; port: number },
  path: string,
  problems: Problems,
): ListenerConfig {
  if (tcp.cluster_specifier !== 'cluster' || !tcp.cluster) problems.add(`${path}.cluster`, 'is required');
  const idleTimeoutMs = durationMs(tcp.idle_timeout, `${path}.idle_timeout`, problems);
  if (tcp.hash_policy.length > 1) problems.add(`${path}.hash_policy`, 'only one hash policy is supported');
  let hashSourceIp = false;
  tcp.hash_policy.forEach((hp, i) => {
    if (hp.policy_specifier === 'source_ip') hashSourceIp = true;
    else problems.add(`${path}.hash_policy[${i}]`, 'only source_ip is supported');
  });
  return {
    kind: 'tcp',
    ...base,
    cluster: tcp.cluster ?? '',
    ...(idleTimeoutMs ? { idleTimeoutMs } : {}),
    ...(hashSourceIp ? { hashSourceIp } : {}),
  };
}

export function decodeListener(l: Listener__Output, version: string, problems: Problems): ListenerConfig | undefined {
  if (!l.name) problems.add('name', 'is required');
  if (l.api_listener) problems.add('api_listener', 'is for proxyless gRPC clients, not the sidecar');
  const sa = l.address?.socket_address;
  if (!sa) {
    problems.add('address.socket_address', 'is required');
  } else {
    if (!isIpAddress(sa.address)) problems.add('address.socket_address.address', `${quote(sa.address)} is not an IP address`);
    if (sa.port_specifier === 'named_port') problems.add('address.socket_address.named_port', 'is not supported');
    else if (!isPort(sa.port_value)) problems.add('address.socket_address.port_value', 'must be 1-65535');
  }
  if (l.default_filter_chain) problems.add('default_filter_chain', 'is not supported');
  if (l.filter_chains.length !== 1) {
    problems.add('filter_chains', `exactly one filter chain is supported, got ${l.filter_chains.length}`);
    return undefined;
  }
  const chain = l.filter_chains[0]!;
  const m = chain.filter_chain_match;
  if (m && (m.destination_port || m.transport_protocol || m.server_names.length || m.application_protocols.length))
    problems.add('filter_chains[0].filter_chain_match', 'is not supported');
  if (chain.transport_socket) problems.add('filter_chains[0].transport_socket', 'TLS termination by xDS is not supported');
  const base = { name: l.name, version, address: sa?.address ?? '', port: sa?.port_value ?? 0 };
  let out: ListenerConfig | undefined;
  chain.filters.forEach((f, i) => {
    const path = `filter_chains[0].filters[${i}]`;
    const last = i === chain.filters.length - 1;
    const url = f.typed_config?.type_url;
    if (!last) {
      problems.add(path, `${quote(f.name)}: only one network filter (http_connection_manager or tcp_proxy) is supported`);
    } else if (url === EXTENSION_TYPE_URL.httpConnectionManager) {
      const hcm = unpackFilter<HttpConnectionManager__Output>(f, path, problems);
      if (hcm) out = decodeHcm(hcm, base, `${path}.typed_config`, problems);
    } else if (url === EXTENSION_TYPE_URL.tcpProxy) {
      const tcp = unpackFilter<TcpProxy__Output>(f, path, problems);
      if (tcp) out = decodeTcp(tcp, base, `${path}.typed_config`, problems);
    } else {
      problems.add(`${path}.typed_config`, `${quote(url ?? f.name)} is not supported`);
    }
  });
  if (chain.filters.length === 0) problems.add('filter_chains[0].filters', 'must not be empty');
  return problems.empty ? out : undefined;
}
