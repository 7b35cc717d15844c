// Envoy's config-load rules that protoc-gen-validate cannot express: names, addresses, domains, filters, ADS wiring.
import { isIP } from 'node:net';
import type { EnvoyProtos } from './envoy-full.ts';
import type { Finding } from './pgv.ts';

const T = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  hcm: 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  tcpProxy: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  httpProtocolOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
} as const;

/**
 * The typed_extension_protocol_options keys Envoy resolves (it looks the factory up by the key, then unpacks the Any
 * into that factory's config type, failing the cluster on a mismatch), with the type each one takes.
 */
const PROTOCOL_OPTIONS: Readonly<Record<string, string>> = {
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': T.httpProtocolOptions,
};

/** One resource as a DiscoveryResponse carries it. */
export interface ServedResource {
  readonly typeUrl: string;
  readonly name: string;
  readonly bytes: Uint8Array;
}

// Decoded resources are deep JSON; the checks read them through this loose shape.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

/** Hash-based policies need a hash on the route, else Envoy picks a random host for every request. */
const HASH_POLICIES = new Set(['RING_HASH', 'MAGLEV']);
const UINT32_MAX = 4_294_967_295;
/** The total weight older Envoys (before total_weight was deprecated) require when total_weight is unset. */
const LEGACY_TOTAL_WEIGHT = 100;
/** Envoy's own stat-name limits: names become stat name segments; keep them printable, space-free and bounded. */
const NAME_RE = /^[\x21-\x7e]{1,255}$/;

/** Checks one scope's whole resource set as one Envoy (or gRPC client) subscribed to everything would load it. */
export function checkScope(protos: EnvoyProtos, served: readonly ServedResource[]): Finding[] {
  const findings: Finding[] = [];
  const add = (path: string, rule: string, message: string) => findings.push({ path, rule, message });
  const decoded = new Map<string, Map<string, J>>();
  for (const r of served) {
    const path = `${short(r.typeUrl)} ${r.name}`;
    const type = protos.typeOf(r.typeUrl);
    if (!type) {
      add(path, 'type_url', `${r.typeUrl} is not an Envoy resource type`);
      continue;
    }
    let byName = decoded.get(r.typeUrl);
    if (!byName) decoded.set(r.typeUrl, (byName = new Map()));
    if (byName.has(r.name)) add(path, 'unique_name', 'the same name is served twice');
    byName.set(r.name, protos.decodeJson(type, r.bytes));
  }
  const clusters = decoded.get(T.cluster) ?? new Map<string, J>();
  const endpoints = decoded.get(T.endpoint) ?? new Map<string, J>();
  const listeners = decoded.get(T.listener) ?? new Map<string, J>();
  const routes = decoded.get(T.route) ?? new Map<string, J>();

  for (const [name, c] of clusters) checkCluster(name, c, endpoints, add);
  for (const [name, cla] of endpoints) checkEndpoints(name, cla, add);
  const routeNames = new Set(routes.keys());
  checkListeners(listeners, clusters, routeNames, routes, add);
  for (const [name, rc] of routes) checkRouteTable(`RDS ${name}`, rc, clusters, add, name);
  return findings;
}

type Add = (path: string, rule: string, message: string) => void;

function short(typeUrl: string): string {
  return { [T.cluster]: 'CDS', [T.endpoint]: 'EDS', [T.listener]: 'LDS', [T.route]: 'RDS' }[typeUrl] ?? typeUrl;
}

function checkName(path: string, name: string, what: string, add: Add): void {
  if (!NAME_RE.test(name)) add(path, 'name', `${what} ${JSON.stringify(name)} must be 1-255 printable characters without spaces`);
}

function checkCluster(name: string, c: J, endpoints: Map<string, J>, add: Add): void {
  const path = `CDS ${name}`;
  if (c.name !== name) add(path, 'name', `resource name ${name} differs from Cluster.name ${c.name}`);
  checkName(path, c.name, 'cluster name', add);
  if (c.alt_stat_name) checkName(`${path}.alt_stat_name`, c.alt_stat_name, 'stat name', add);
  const type = c.type ?? 'STATIC';
  if (type === 'EDS') {
    const src = c.eds_cluster_config?.eds_config;
    if (!src) add(`${path}.eds_cluster_config.eds_config`, 'eds_ads', 'an EDS cluster needs eds_config');
    else {
      if (src.config_source_specifier !== 'ads') add(`${path}.eds_cluster_config.eds_config`, 'eds_ads', `must be ads {}, not ${src.config_source_specifier}`);
      if (src.resource_api_version !== 'V3') add(`${path}.eds_cluster_config.eds_config.resource_api_version`, 'api_version', `${src.resource_api_version} (Envoy serves only V3)`);
    }
    const claName = c.eds_cluster_config?.service_name || name;
    if (!endpoints.has(claName)) add(path, 'eds_present', `no ClusterLoadAssignment ${claName} is served (the cluster would never warm)`);
    if (c.load_assignment) add(`${path}.load_assignment`, 'eds_inline', 'an EDS cluster takes its endpoints from EDS');
  } else if (type === 'LOGICAL_DNS' || type === 'STRICT_DNS' || type === 'STATIC') {
    const localities: J[] = c.load_assignment?.endpoints ?? [];
    const lbEndpoints = localities.flatMap((l) => l.lb_endpoints ?? []);
    if (type === 'LOGICAL_DNS' && (localities.length !== 1 || lbEndpoints.length !== 1)) {
      add(`${path}.load_assignment`, 'logical_dns', 'LOGICAL_DNS clusters must have exactly one locality with one endpoint');
    }
    for (const [i, ep] of lbEndpoints.entries()) {
      const sa = ep.endpoint?.address?.socket_address;
      const at = `${path}.load_assignment.lb_endpoints[${i}]`;
      if (!sa?.address) add(at, 'address', 'needs a socket address');
      else if (type === 'STATIC' && isIP(sa.address) === 0) add(at, 'address', `${sa.address} must be an IP for a STATIC cluster`);
      if (!(sa?.port_value > 0)) add(at, 'port', 'needs a port');
    }
  }
  const policy = c.lb_policy ?? 'ROUND_ROBIN';
  const configs: Record<string, string> = {
    ring_hash_lb_config: 'RING_HASH',
    maglev_lb_config: 'MAGLEV',
    least_request_lb_config: 'LEAST_REQUEST',
    round_robin_lb_config: 'ROUND_ROBIN',
  };
  for (const [field, wants] of Object.entries(configs)) {
    if (c[field] && policy !== wants) add(`${path}.${field}`, 'lb_config', `set while lb_policy is ${policy}`);
  }
  for (const [key, any] of Object.entries((c.typed_extension_protocol_options ?? {}) as Record<string, J>)) {
    const at = `${path}.typed_extension_protocol_options[${key}]`;
    const wants = PROTOCOL_OPTIONS[key];
    // Decoded Anys are expanded ("@type") when the payload's type is loaded, else left as type_url and value.
    const url = any?.['@type'] ?? any?.type_url;
    if (!wants) add(at, 'protocol_options', `no network filter, HTTP filter or upstream protocol options are named ${key}`);
    else if (url !== wants) add(at, 'protocol_options', `${key} takes ${wants}, not ${url}`);
  }
}

function checkEndpoints(name: string, cla: J, add: Add): void {
  const path = `EDS ${name}`;
  if (cla.cluster_name !== name) add(path, 'name', `resource name ${name} differs from cluster_name ${cla.cluster_name}`);
  const priorities = new Set<number>();
  for (const [i, loc] of (cla.endpoints ?? []).entries()) {
    priorities.add(loc.priority ?? 0);
    for (const [j, ep] of (loc.lb_endpoints ?? []).entries()) {
      const at = `${path}.endpoints[${i}].lb_endpoints[${j}].endpoint.address.socket_address`;
      const sa = ep.endpoint?.address?.socket_address;
      if (!sa) add(at, 'address', 'an EDS endpoint needs a socket address');
      else if (isIP(sa.address ?? '') === 0) add(`${at}.address`, 'ip', `${JSON.stringify(sa.address)} is not an IP (EDS endpoints are not resolved)`);
      else if (!(sa.port_value > 0)) add(`${at}.port_value`, 'port', 'must be 1-65535');
    }
  }
  const sorted = [...priorities].sort((a, b) => a - b);
  if (sorted.some((p, i) => p !== i)) add(path, 'priorities', `priorities ${sorted.join(',')} must run 0, 1, 2, … without gaps`);
}

function checkListeners(listeners: Map<string, J>, clusters: Map<string, J>, routeNames: Set<string>, routes: Map<string, J>, add: Add): void {
  const addresses = new Map<string, string>();
  let unbound = false;
  let handsOff = false;
  for (const [name, l] of listeners) {
    const path = `LDS ${name}`;
    if (l.name !== name) add(path, 'name', `resource name ${name} differs from Listener.name ${l.name}`);
    checkName(path, l.name, 'listener name', add);
    if (l.api_listener) {
      const api = l.api_listener.api_listener;
      if (!api || api['@type'] !== T.hcm) add(`${path}.api_listener`, 'api_listener', 'must hold an HttpConnectionManager');
      else checkHcm(`${path}.api_listener.api_listener`, api, routeNames, routes, clusters, add);
      continue;
    }
    const sa = l.address?.socket_address;
    if (!sa) {
      add(`${path}.address`, 'address', 'a listener without api_listener needs an address');
      continue;
    }
    const key = `${sa.address}:${sa.port_value}`;
    const prior = addresses.get(key);
    if (prior) add(`${path}.address`, 'unique_address', `${key} is also the address of listener ${prior}`);
    addresses.set(key, name);
    if (l.bind_to_port?.value === false) unbound = true;
    else if (l.use_original_dst?.value === true) handsOff = true;
    const chains: J[] = l.filter_chains ?? [];
    if (chains.length === 0 && !l.default_filter_chain) add(`${path}.filter_chains`, 'filter_chains', 'needs a filter chain');
    const matches = new Set<string>();
    for (const [i, chain] of chains.entries()) {
      const m = JSON.stringify(chain.filter_chain_match ?? {});
      if (matches.has(m)) add(`${path}.filter_chains[${i}]`, 'filter_chain_match', 'two filter chains have the same match');
      matches.add(m);
      const filters: J[] = chain.filters ?? [];
      if (filters.length === 0) add(`${path}.filter_chains[${i}].filters`, 'filters', 'needs a network filter');
      for (const [j, f] of filters.entries()) {
        const at = `${path}.filter_chains[${i}].filters[${j}]`;
        const typed = f.typed_config;
        const terminal = typed?.['@type'] === T.hcm || typed?.['@type'] === T.tcpProxy;
        const last = j === filters.length - 1;
        if (!typed) add(`${at}.typed_config`, 'typed_config', `filter ${f.name} needs a typed_config`);
        if (terminal !== last) add(at, 'terminal_filter', last ? 'the last network filter must be terminal' : `terminal filter ${f.name} must be last`);
        if (typed?.['@type'] === T.hcm) checkHcm(`${at}.typed_config`, typed, routeNames, routes, clusters, add);
        if (typed?.['@type'] === T.tcpProxy) {
          if (typed.cluster && !clusters.has(typed.cluster)) add(`${at}.typed_config.cluster`, 'cluster_exists', `no cluster ${typed.cluster}`);
          if (typed.stat_prefix) checkName(`${at}.typed_config.stat_prefix`, typed.stat_prefix, 'stat_prefix', add);
        }
      }
    }
  }
  // Listeners that do not bind only see connections a bound listener hands off by original destination.
  if (unbound && !handsOff) add('LDS', 'use_original_dst', 'bind_to_port: false listeners are unreachable: no bound listener sets use_original_dst');
}

function checkHcm(path: string, hcm: J, routeNames: Set<string>, routes: Map<string, J>, clusters: Map<string, J>, add: Add): void {
  if (!hcm.stat_prefix) add(`${path}.stat_prefix`, 'stat_prefix', 'HttpConnectionManager needs a stat_prefix');
  else checkName(`${path}.stat_prefix`, hcm.stat_prefix, 'stat_prefix', add);
  if (hcm.route_specifier === 'rds') {
    const src = hcm.rds?.config_source;
    if (src?.config_source_specifier !== 'ads') add(`${path}.rds.config_source`, 'rds_ads', `must be ads {}, not ${src?.config_source_specifier}`);
    if (src?.resource_api_version !== 'V3') add(`${path}.rds.config_source.resource_api_version`, 'api_version', `${src?.resource_api_version} (Envoy serves only V3)`);
    const name = hcm.rds?.route_config_name;
    if (!routeNames.has(name)) add(`${path}.rds.route_config_name`, 'rds_present', `no RouteConfiguration ${name} is served`);
  } else if (hcm.route_specifier === 'route_config') {
    checkRouteTable(`${path}.route_config`, hcm.route_config, clusters, add);
  } else add(path, 'route_specifier', 'needs rds or route_config');
  const filters: J[] = hcm.http_filters ?? [];
  const routers = filters.filter((f) => f.typed_config?.['@type'] === T.router);
  if (filters.length === 0 || filters[filters.length - 1]?.typed_config?.['@type'] !== T.router) add(`${path}.http_filters`, 'router_last', 'the router filter must be the last HTTP filter');
  if (routers.length > 1) add(`${path}.http_filters`, 'router_once', 'the router filter appears more than once');
  for (const [i, f] of filters.entries()) if (!f.typed_config && !f.config_discovery) add(`${path}.http_filters[${i}]`, 'typed_config', `${f.name} needs a typed_config`);
  void routes;
}

function checkRouteTable(path: string, rc: J, clusters: Map<string, J>, add: Add, name?: string): void {
  if (name !== undefined && rc.name !== name) add(path, 'name', `resource name ${name} differs from RouteConfiguration.name ${rc.name}`);
  const vhostNames = new Set<string>();
  const domains = new Map<string, string>();
  let wildcards = 0;
  for (const [i, vh] of (rc.virtual_hosts ?? []).entries()) {
    const at = `${path}.virtual_hosts[${i}]`;
    if (vhostNames.has(vh.name)) add(`${at}.name`, 'unique_vhost', `virtual host name ${vh.name} repeats`);
    vhostNames.add(vh.name);
    for (const d of vh.domains ?? []) {
      const lower = String(d).toLowerCase();
      const prior = domains.get(lower);
      if (prior !== undefined) add(`${at}.domains`, 'unique_domain', `domain ${d} is also served by virtual host ${prior}`);
      domains.set(lower, vh.name);
      if (lower === '*') wildcards++;
      else if (lower.includes('*') && !/^\*[^*]+$|^[^*]+\*$/.test(lower)) add(`${at}.domains`, 'wildcard', `${d}: a wildcard may only start or end a domain`);
    }
    for (const [j, route] of (vh.routes ?? []).entries()) checkRoute(`${at}.routes[${j}]`, route, clusters, add);
  }
  if (wildcards > 1) add(`${path}`, 'wildcard', 'only one virtual host may hold the domain "*"');
}

function checkRoute(path: string, route: J, clusters: Map<string, J>, add: Add): void {
  const action = route.route;
  if (!action) return;
  const targets: string[] = [];
  if (action.cluster_specifier === 'cluster') targets.push(action.cluster);
  else if (action.cluster_specifier === 'weighted_clusters') {
    const wc = action.weighted_clusters;
    const weights: number[] = (wc.clusters ?? []).map((c: J) => c.weight?.value ?? 0);
    const sum = weights.reduce((a, b) => a + b, 0);
    const total = wc.total_weight?.value;
    if (sum <= 0) add(`${path}.route.weighted_clusters`, 'weights', 'the weights sum to 0');
    if (sum > UINT32_MAX) add(`${path}.route.weighted_clusters`, 'weights', `the weights sum to ${sum}, above 2^32-1`);
    if (total !== undefined && total > 0 && total !== sum) add(`${path}.route.weighted_clusters.total_weight`, 'total_weight', `is ${total} but the weights sum to ${sum}`);
    if (total === undefined && sum !== LEGACY_TOTAL_WEIGHT) {
      add(`${path}.route.weighted_clusters`, 'total_weight', `the weights sum to ${sum}; without total_weight, Envoy before 1.25 requires ${LEGACY_TOTAL_WEIGHT}`);
    }
    for (const c of wc.clusters ?? []) targets.push(c.name);
  }
  for (const t of targets) {
    const c = clusters.get(t);
    if (!c) {
      add(`${path}.route`, 'cluster_exists', `no cluster ${t} is served`);
      continue;
    }
    if (HASH_POLICIES.has(c.lb_policy) && (action.hash_policy ?? []).length === 0) {
      add(`${path}.route.hash_policy`, 'hash_policy', `cluster ${t} is ${c.lb_policy} but the route hashes nothing (every request lands on a random host)`);
    }
  }
}
