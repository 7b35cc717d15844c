// Request → virtual host → route → cluster, pure and precompiled per route table (O(1) for exact hosts).
import type { HeaderMatch, RouteAction, RouteConfig, RouteTableConfig, VirtualHostConfig } from '../xds/model.ts';

/** Request headers as node:http and node:http2 present them (lower-case names). */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

export interface CompiledVirtualHost {
  readonly config: VirtualHostConfig;
  readonly routes: readonly CompiledRoute[];
  /** Some route matches on request headers (callers may skip building a headers object otherwise). */
  readonly matchesHeaders: boolean;
}

export interface CompiledRoute {
  readonly config: RouteConfig;
  readonly action: RouteAction;
  /** Lower-cased match value when the route is case-insensitive. */
  readonly value: string;
  readonly kind: 'prefix' | 'exact' | 'segment-prefix';
  readonly caseSensitive: boolean;
  readonly headers: readonly HeaderMatch[];
}

interface Wildcard {
  readonly part: string;
  readonly vhost: CompiledVirtualHost;
}

/** A route table with its domains indexed: exact map first, then `*.suffix`, `prefix.*`, `*` (Envoy's order). */
export class RouteTable {
  readonly config: RouteTableConfig;
  private readonly exact = new Map<string, CompiledVirtualHost>();
  private readonly suffixes: Wildcard[] = [];
  private readonly prefixes: Wildcard[] = [];
  private readonly catchAll: CompiledVirtualHost | undefined;

  constructor(config: RouteTableConfig) {
    this.config = config;
    let catchAll: CompiledVirtualHost | undefined;
    for (const vh of config.virtualHosts) {
      const routes = vh.routes.map(compileRoute);
      const compiled: CompiledVirtualHost = { config: vh, routes, matchesHeaders: routes.some((r) => r.headers.length > 0) };
      for (const raw of vh.domains) {
        const d = raw.toLowerCase();
        if (d === '*') catchAll ??= compiled;
        else if (d.startsWith('*')) this.suffixes.push({ part: d.slice(1), vhost: compiled });
        else if (d.endsWith('*')) this.prefixes.push({ part: d.slice(0, -1), vhost: compiled });
        else if (!this.exact.has(d)) this.exact.set(d, compiled);
      }
    }
    // Longest wildcard wins, as in Envoy.
    this.suffixes.sort((a, b) => b.part.length - a.part.length);
    this.prefixes.sort((a, b) => b.part.length - a.part.length);
    this.catchAll = catchAll;
  }

  /** The virtual host for a Host/:authority value (any case, with or without port, trailing-dot FQDN allowed). */
  findVirtualHost(authority: string): CompiledVirtualHost | undefined {
    const hit = this.exact.get(authority);
    if (hit !== undefined) return hit;
    const a = normalizeAuthority(authority);
    const vh = this.exact.get(a);
    if (vh !== undefined) return vh;
    const colon = portSeparator(a);
    const host = colon < 0 ? a : a.slice(0, colon);
    if (colon >= 0) {
      // Port 80 is the scheme default, so `web:80` may use the port-less domain. Other ports never fall back
      // to it: `web:1234` must not reach the default port's Service (the table names every port explicitly).
      if (a.endsWith(':80') && colon === a.length - 3) {
        const byHost = this.exact.get(host);
        if (byHost !== undefined) return byHost;
      }
    } else {
      // No port in Host means the scheme's default: try `host:80`.
      const with80 = this.exact.get(`${host}:80`);
      if (with80 !== undefined) return with80;
    }
    for (const w of this.suffixes) if (a.endsWith(w.part) || host.endsWith(w.part)) return w.vhost;
    for (const w of this.prefixes) if (a.startsWith(w.part) || host.startsWith(w.part)) return w.vhost;
    return this.catchAll;
  }
}

/** Lower-cases and drops a trailing dot on the host part (`Web.Default.svc.cluster.local.:80` → `web.default.svc.cluster.local:80`). */
export function normalizeAuthority(authority: string): string {
  let a = authority.toLowerCase();
  const colon = portSeparator(a);
  if (colon < 0) {
    if (a.endsWith('.')) a = a.slice(0, -1);
  } else if (a.charCodeAt(colon - 1) === 0x2e /* . */) {
    a = a.slice(0, colon - 1) + a.slice(colon);
  }
  return a;
}

/** Index of the `:` before a port, or -1; IPv6 literals are bracketed (`[::1]:80`). */
export function portSeparator(a: string): number {
  const i = a.lastIndexOf(':');
  if (i < 0) return -1;
  const bracket = a.lastIndexOf(']');
  if (bracket > i) return -1;
  if (bracket < 0 && a.indexOf(':') !== i) return -1; // bare IPv6 without port
  return i;
}

function compileRoute(config: RouteConfig): CompiledRoute {
  const caseSensitive = config.caseSensitive;
  let value = config.path.value;
  if (config.path.kind === 'segment-prefix' && value.length > 1 && value.endsWith('/')) value = value.slice(0, -1);
  return {
    config,
    action: config.action,
    value: caseSensitive ? value : value.toLowerCase(),
    kind: config.path.kind,
    caseSensitive,
    headers: config.headers.map((h) => ({ ...h, name: h.name.toLowerCase() })),
  };
}

/** The first route of a virtual host whose path and headers match; the path may carry a query string. */
export function findRoute(vh: CompiledVirtualHost, rawPath: string, headers: RequestHeaders): CompiledRoute | undefined {
  const q = rawPath.indexOf('?');
  const path = q < 0 ? rawPath : rawPath.slice(0, q);
  let lower: string | undefined;
  for (const r of vh.routes) {
    let p = path;
    if (!r.caseSensitive) p = lower ??= path.toLowerCase();
    if (!pathMatches(r, p)) continue;
    if (r.headers.length > 0 && !headersMatch(r.headers, headers)) continue;
    return r;
  }
  return undefined;
}

function pathMatches(r: CompiledRoute, path: string): boolean {
  switch (r.kind) {
    case 'prefix':
      return path.startsWith(r.value);
    case 'exact':
      return path === r.value;
    case 'segment-prefix':
      if (r.value === '/') return path.startsWith('/');
      return path.startsWith(r.value) && (path.length === r.value.length || path.charCodeAt(r.value.length) === 0x2f);
  }
}

function headersMatch(matches: readonly HeaderMatch[], headers: RequestHeaders): boolean {
  for (const m of matches) {
    const raw = headers[m.name];
    const value = raw === undefined ? undefined : Array.isArray(raw) ? raw.join(',') : raw;
    let ok: boolean;
    if (m.exact !== undefined) ok = value === m.exact;
    else if (m.prefix !== undefined) ok = value !== undefined && value.startsWith(m.prefix);
    else if (m.present !== undefined) ok = (value !== undefined) === m.present;
    else ok = value !== undefined;
    if (ok === m.invert) return false;
  }
  return true;
}

/** Picks a cluster from a forward action by weight; `r` is a random number in [0, 1). */
export function pickCluster(action: Extract<RouteAction, { kind: 'forward' }>, r: number): string {
  const targets = action.targets;
  if (targets.length === 1) return (targets[0] as { cluster: string }).cluster;
  let x = r * action.totalWeight;
  for (const t of targets) {
    if (x < t.weight) return t.cluster;
    x -= t.weight;
  }
  return (targets[targets.length - 1] as { cluster: string }).cluster;
}

/**
 * Splits an absolute-form request target (`http://web.default:8080/p?q`, as sent to an HTTP proxy) into
 * authority and origin-form path; undefined when the target is not absolute-form. `emptyPath`: the URL had no path
 * (an OPTIONS for it then goes on as `OPTIONS *`, RFC 9112 §3.2.4).
 */
export function splitAbsoluteUrl(target: string): { authority: string; path: string; emptyPath: boolean } | undefined {
  if (target.charCodeAt(0) === 0x2f /* / */) return undefined;
  const scheme = target.indexOf('://');
  if (scheme < 0) return undefined;
  const start = scheme + 3;
  let end = start;
  while (end < target.length) {
    const c = target.charCodeAt(end);
    if (c === 0x2f || c === 0x3f || c === 0x23) break;
    end++;
  }
  let authority = target.slice(start, end);
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  let path = target.slice(end);
  const emptyPath = path === '' || path.charCodeAt(0) !== 0x2f;
  if (emptyPath) path = `/${path}`;
  return { authority, path, emptyPath: path === '/' && emptyPath };
}
