// RDS: virtual hosts per HTTP Service port, route tables per namespace (envoy) and per port (proxyless), domain dedup.
import type { Route, RouteConfiguration, VirtualHost } from '../../proto/index.ts';
import { durationOf } from './annotations.ts';

/** A resolved route target: an existing cluster and its weight. */
export interface ClusterTarget {
  readonly cluster: string;
  readonly weight: number;
}

export interface RouteSpec {
  readonly prefix: string;
  readonly targets: readonly ClusterTarget[];
}

/**
 * Routes for a vhost: annotation routes in order, then the catch-all to the port's own cluster (unless overridden).
 * `hashHeader` adds a hash policy on that request header (what a ring-hash cluster hashes on).
 */
export function buildRoutes(ownCluster: string, extra: readonly RouteSpec[], timeoutMs: number, hashHeader?: string): Route[] {
  const specs = [...extra];
  if (!specs.some((s) => s.prefix === '/')) specs.push({ prefix: '/', targets: [{ cluster: ownCluster, weight: 1 }] });
  return specs.map((spec) => {
    const only = spec.targets.length === 1 ? spec.targets[0] : undefined;
    const action = only
      ? { cluster: only.cluster, timeout: durationOf(timeoutMs) }
      : {
          weighted_clusters: { clusters: spec.targets.map((t) => ({ name: t.cluster, weight: { value: t.weight } })) },
          timeout: durationOf(timeoutMs),
        };
    const hashing = hashHeader ? { hash_policy: [{ header: { header_name: hashHeader } }] } : {};
    return { match: { prefix: spec.prefix }, route: { ...action, ...hashing } };
  });
}

export function buildVirtualHost(name: string, domains: readonly string[], routes: readonly Route[]): VirtualHost {
  return { name, domains: [...domains], routes: [...routes] };
}

export function buildRouteConfiguration(name: string, virtualHosts: readonly VirtualHost[]): RouteConfiguration {
  return { name, virtual_hosts: [...virtualHosts] };
}

/** Every cluster a route table's routes name (for the snapshot consistency check). */
export function clustersOfRoutes(routes: readonly Route[] | undefined): string[] {
  const out: string[] = [];
  for (const r of routes ?? []) {
    if (r.route?.cluster) out.push(r.route.cluster);
    for (const w of r.route?.weighted_clusters?.clusters ?? []) if (w.name) out.push(w.name);
  }
  return out;
}

export interface DuplicateDomain {
  readonly domain: string;
  /** The vhost that keeps it (earlier in name order). */
  readonly keptBy: string;
  /** The vhost it was removed from. */
  readonly removedFrom: string;
}

/**
 * Envoy rejects a route table in which two virtual hosts share a domain. Walks vhosts in the given order and removes
 * a domain from every later vhost that repeats it; returns the same objects where nothing was removed.
 */
export function dedupeDomains(vhosts: readonly VirtualHost[]): { vhosts: VirtualHost[]; duplicates: DuplicateDomain[] } {
  const owner = new Map<string, string>();
  const duplicates: DuplicateDomain[] = [];
  const out = vhosts.map((vh) => {
    const name = vh.name ?? '';
    let kept: string[] | undefined;
    const domains = vh.domains ?? [];
    for (const [i, domain] of domains.entries()) {
      const prior = owner.get(domain);
      if (prior === undefined) {
        owner.set(domain, name);
        kept?.push(domain);
      } else {
        duplicates.push({ domain, keptBy: prior, removedFrom: name });
        kept ??= domains.slice(0, i);
      }
    }
    return kept ? { ...vh, domains: kept } : vh;
  });
  return { vhosts: out, duplicates };
}
