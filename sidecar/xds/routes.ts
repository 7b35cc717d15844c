// Validates an Envoy RouteConfiguration (RDS or inline in an HCM) into the sidecar's route table, and VHDS VirtualHosts.
import type { Route__Output, RouteConfiguration__Output, VirtualHost__Output } from '../../proto/index.ts';
import type { HeaderMatch, PathMatch, RouteAction, RouteConfig, RouteTableConfig, VirtualHostConfig } from './model.ts';
import { durationMs, type Problems, quote } from './fields.ts';

type RetryPolicy = NonNullable<VirtualHost__Output['retry_policy']>;
type Action = NonNullable<Route__Output['route']>;
type Retry = NonNullable<Extract<RouteAction, { kind: 'forward' }>['retry']>;

/** Envoy's route timeout when `timeout` is unset; an explicit 0s means no timeout. */
export const DEFAULT_ROUTE_TIMEOUT_MS = 15_000;

/** retry_on conditions the sidecar's retry wrapper understands (Envoy's names). */
export const RETRY_ON = new Set([
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

function decodeRetry(rp: RetryPolicy, path: string, problems: Problems): Retry | undefined {
  const retryOn = rp.retry_on
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const cond of retryOn) if (!RETRY_ON.has(cond)) problems.add(`${path}.retry_on`, `${quote(cond)} is not supported`);
  if (rp.retriable_status_codes.length > 0)
    problems.add(`${path}.retriable_status_codes`, 'is not supported (use 5xx, gateway-error or retriable-4xx)');
  const perTryTimeoutMs = durationMs(rp.per_try_timeout, `${path}.per_try_timeout`, problems);
  const numRetries = rp.num_retries ? rp.num_retries.value : 1;
  return {
    retryOn,
    numRetries,
    ...(perTryTimeoutMs !== undefined && perTryTimeoutMs > 0 ? { perTryTimeoutMs } : {}),
  };
}

function decodePath(route: Route__Output, path: string, problems: Problems): PathMatch | undefined {
  const m = route.match;
  if (!m) {
    problems.add(`${path}.match`, 'is required');
    return undefined;
  }
  switch (m.path_specifier) {
    case 'prefix':
      return { kind: 'prefix', value: m.prefix ?? '' };
    case 'path':
      if (!m.path?.startsWith('/')) problems.add(`${path}.match.path`, 'must start with /');
      return { kind: 'exact', value: m.path ?? '' };
    case 'path_separated_prefix': {
      const v = m.path_separated_prefix ?? '';
      if (!v.startsWith('/') || /[?#]/.test(v) || (v.length > 1 && v.endsWith('/')))
        problems.add(`${path}.match.path_separated_prefix`, 'must start with /, not end with /, and hold no ? or #');
      return { kind: 'segment-prefix', value: v };
    }
    default:
      problems.add(`${path}.match`, 'one of prefix, path, path_separated_prefix is required');
      return undefined;
  }
}

function decodeHeaders(route: Route__Output, path: string, problems: Problems): HeaderMatch[] {
  return (route.match?.headers ?? []).map((h, k) => {
    const hpath = `${path}.match.headers[${k}]`;
    if (!h.name) problems.add(`${hpath}.name`, 'is required');
    const name = h.name.toLowerCase();
    const invert = h.invert_match;
    if (h.header_match_specifier === 'present_match') return { name, present: h.present_match ?? false, invert };
    if (h.header_match_specifier === 'string_match' && h.string_match) {
      const sm = h.string_match;
      if (sm.ignore_case) problems.add(`${hpath}.string_match.ignore_case`, 'is not supported');
      if (sm.match_pattern === 'exact') return { name, exact: sm.exact ?? '', invert };
      if (sm.match_pattern === 'prefix') return { name, prefix: sm.prefix ?? '', invert };
      problems.add(`${hpath}.string_match`, `${sm.match_pattern ?? 'an empty matcher'} is not supported (exact, prefix)`);
      return { name, invert };
    }
    // Envoy: a matcher with no specifier matches when the header is present.
    return { name, present: true, invert };
  });
}

function decodeForward(a: Action, vhRetry: RetryPolicy | null, vhPath: string, path: string, problems: Problems): RouteAction {
  const targets: { cluster: string; weight: number }[] = [];
  if (a.cluster_specifier === 'cluster') {
    if (!a.cluster) problems.add(`${path}.cluster`, 'must not be empty');
    targets.push({ cluster: a.cluster ?? '', weight: 1 });
  } else if (a.cluster_specifier === 'weighted_clusters' && a.weighted_clusters) {
    const wc = a.weighted_clusters.clusters;
    if (wc.length === 0) problems.add(`${path}.weighted_clusters.clusters`, 'must not be empty');
    wc.forEach((c, i) => {
      if (!c.name) problems.add(`${path}.weighted_clusters.clusters[${i}].name`, 'must not be empty');
      targets.push({ cluster: c.name, weight: c.weight?.value ?? 0 });
    });
    if (wc.length > 0 && targets.every((t) => t.weight === 0))
      problems.add(`${path}.weighted_clusters`, 'total weight must be greater than 0');
  } else {
    problems.add(path, 'one of cluster, weighted_clusters is required');
  }
  if (a.host_rewrite_specifier === 'host_rewrite_literal') problems.add(`${path}.host_rewrite_literal`, 'is not supported');
  if (durationMs(a.idle_timeout, `${path}.idle_timeout`, problems)) problems.add(`${path}.idle_timeout`, 'is not supported');
  if (durationMs(a.max_stream_duration?.max_stream_duration, `${path}.max_stream_duration`, problems))
    problems.add(`${path}.max_stream_duration.max_stream_duration`, 'is not supported');
  let hashHeader: string | undefined;
  let hashSourceIp = false;
  if (a.hash_policy.length > 1) problems.add(`${path}.hash_policy`, 'only one hash policy is supported');
  a.hash_policy.forEach((hp, i) => {
    if (hp.policy_specifier === 'header' && hp.header?.header_name) hashHeader = hp.header.header_name.toLowerCase();
    else if (hp.policy_specifier === 'connection_properties' && hp.connection_properties?.source_ip === true) hashSourceIp = true;
    else problems.add(`${path}.hash_policy[${i}]`, 'only header { header_name } and connection_properties { source_ip: true } are supported');
  });
  const timeout = a.timeout ? durationMs(a.timeout, `${path}.timeout`, problems) : DEFAULT_ROUTE_TIMEOUT_MS;
  const rp = a.retry_policy ?? vhRetry;
  const retry = rp ? decodeRetry(rp, a.retry_policy ? `${path}.retry_policy` : vhPath ? `${vhPath}.retry_policy` : 'retry_policy', problems) : undefined;
  return {
    kind: 'forward',
    targets,
    totalWeight: targets.reduce((n, t) => n + t.weight, 0),
    ...(timeout ? { timeoutMs: timeout } : {}),
    ...(a.prefix_rewrite ? { prefixRewrite: a.prefix_rewrite } : {}),
    ...(hashHeader ? { hashHeader } : {}),
    ...(hashSourceIp ? { hashSourceIp } : {}),
    ...(retry ? { retry } : {}),
  };
}

function decodeRoute(
  route: Route__Output,
  vh: VirtualHost__Output,
  vhPath: string,
  path: string,
  problems: Problems,
): RouteConfig {
  const match = decodePath(route, path, problems) ?? { kind: 'prefix', value: '/' };
  const headers = decodeHeaders(route, path, problems);
  let action: RouteAction = { kind: 'direct', status: 500, body: '' };
  if (route.action === 'route' && route.route) {
    action = decodeForward(route.route, vh.retry_policy, vhPath, `${path}.route`, problems);
  } else if (route.action === 'direct_response' && route.direct_response) {
    const dr = route.direct_response;
    if (dr.status < 200 || dr.status > 599) problems.add(`${path}.direct_response.status`, 'must be 200-599');
    let body = '';
    if (dr.body?.specifier === 'inline_string') body = dr.body.inline_string ?? '';
    else if (dr.body?.specifier === 'inline_bytes') body = Buffer.from(dr.body.inline_bytes ?? []).toString('utf8');
    else if (dr.body?.specifier === 'filename') problems.add(`${path}.direct_response.body.filename`, 'is not supported');
    action = { kind: 'direct', status: dr.status, body };
  } else if (route.action === 'non_forwarding_action') {
    problems.add(`${path}.non_forwarding_action`, 'is not supported');
  } else {
    problems.add(path, 'one of route, direct_response is required');
  }
  return {
    name: route.name,
    path: match,
    caseSensitive: route.match?.case_sensitive ? route.match.case_sensitive.value : true,
    headers,
    action,
  };
}

function checkDomain(domain: string, path: string, problems: Problems): void {
  const stars = domain.split('*').length - 1;
  if (!domain) problems.add(path, 'must not be empty');
  else if (stars > 1 || (stars === 1 && domain !== '*' && !domain.startsWith('*') && !domain.endsWith('*')))
    problems.add(path, `${quote(domain)}: a wildcard may only lead or end a domain`);
}

/**
 * Validates one VirtualHost (inside a table, or a VHDS resource on its own); `vpath` prefixes its field paths.
 * `seen` (domain → index of the vhost that has it) catches duplicates across the table's vhosts.
 */
export function decodeVirtualHost(
  vh: VirtualHost__Output,
  vpath: string,
  problems: Problems,
  seen: Map<string, number> = new Map(),
  index = 0,
  tablePrefix = '',
): VirtualHostConfig {
  if (!vh.name) problems.add(`${vpath}name`, 'is required');
  if (vh.domains.length === 0) problems.add(`${vpath}domains`, 'must not be empty');
  if (vh.request_headers_to_add.length > 0) problems.add(`${vpath}request_headers_to_add`, 'is not supported');
  const domains = vh.domains.map((d, j) => {
    const domain = d.toLowerCase();
    checkDomain(domain, `${vpath}domains[${j}]`, problems);
    const first = seen.get(domain);
    if (first !== undefined && first !== index) {
      problems.add(`${vpath}domains[${j}]`, `${quote(domain)} duplicates ${tablePrefix}virtual_hosts[${first}]`);
    } else if (first === index) {
      problems.add(`${vpath}domains[${j}]`, `${quote(domain)} is listed twice`);
    } else {
      seen.set(domain, index);
    }
    return domain;
  });
  const base = vpath.endsWith('.') ? vpath.slice(0, -1) : vpath;
  const routes = vh.routes.map((r, k) => decodeRoute(r, vh, base, `${vpath}routes[${k}]`, problems));
  return { name: vh.name, domains, routes };
}

/** Validates a RouteConfiguration; `prefix` is prepended to field paths (for a table inline in an HCM). */
export function decodeRouteConfiguration(
  rc: RouteConfiguration__Output,
  version: string,
  problems: Problems,
  prefix = '',
): RouteTableConfig {
  if (!rc.name && !prefix) problems.add('name', 'is required');
  const seen = new Map<string, number>();
  const virtualHosts: VirtualHostConfig[] = rc.virtual_hosts.map((vh, i) =>
    decodeVirtualHost(vh, `${prefix}virtual_hosts[${i}].`, problems, seen, i, prefix),
  );
  let vhds = false;
  if (rc.vhds) {
    // VHDS: the virtual hosts come as VirtualHost resources on the same ADS stream (store.ts assembles the table).
    const src = rc.vhds.config_source;
    if (prefix) problems.add(`${prefix}vhds`, 'is not supported in an inline route table');
    else if (src?.config_source_specifier !== 'ads') problems.add('vhds.config_source', 'only ads {} is supported');
    else vhds = true;
  }
  return { name: rc.name, version, virtualHosts, ...(vhds ? { vhds } : {}) };
}

/** Every cluster a route table forwards to. */
export function clustersOfRoutes(table: RouteTableConfig): Set<string> {
  const out = new Set<string>();
  for (const vh of table.virtualHosts)
    for (const r of vh.routes) if (r.action.kind === 'forward') for (const t of r.action.targets) out.add(t.cluster);
  return out;
}
