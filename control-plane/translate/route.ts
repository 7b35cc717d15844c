// RDS: virtual hosts per HTTP Service port, route tables per namespace (envoy) and per port (proxyless), domain dedup.
import type { Route, RouteConfiguration, VirtualHost } from '../../proto/index.ts';
import { durationOf } from './annotations.ts';
import { runNow, type Sliced } from '../slices.ts';

/**
 * What a ring-hash Service hashes on: a request header (`skein.dev/hash-header`), or the caller's address
 * (Kubernetes `sessionAffinity: ClientIP`).
 */
export type HashKey = { readonly header: string } | { readonly sourceIp: true };

/** A resolved route target: an existing cluster, its weight, and what its Service hashes on (ring hash). */
export interface ClusterTarget {
  readonly cluster: string;
  readonly weight: number;
  readonly hash?: HashKey | undefined;
}

export interface RouteSpec {
  readonly prefix: string;
  readonly targets: readonly ClusterTarget[];
}

/** What weighted_clusters weights add up to: Envoy before total_weight was deprecated requires 100 when it is unset. */
export const TOTAL_WEIGHT = 100;

/**
 * Scales weights to sum to TOTAL_WEIGHT (largest remainder, every target keeps at least 1), so old and new Envoys,
 * gRPC and the sidecar read the same split. The annotation allows at most TOTAL_WEIGHT targets.
 */
export function normaliseWeights(weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (weights.length === 0 || weights.length > TOTAL_WEIGHT || sum <= 0) return [...weights];
  const exact = weights.map((w) => (w / sum) * TOTAL_WEIGHT);
  const out = exact.map(Math.floor);
  let left = TOTAL_WEIGHT - out.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => ({ i, rest: x - Math.floor(x) })).sort((a, b) => b.rest - a.rest || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    out[i] = (out[i] ?? 0) + 1;
    left--;
  }
  // A target rounded down to nothing keeps 1, taken from the largest share.
  for (const [i, w] of out.entries()) {
    if (w > 0 || (weights[i] ?? 0) <= 0) continue;
    const largest = out.indexOf(Math.max(...out));
    out[largest] = (out[largest] ?? 0) - 1;
    out[i] = 1;
  }
  return out;
}

/** Envoy's hash policy for a key; gRPC clients get theirs from forProxyless. */
function hashPolicy(key: HashKey): NonNullable<NonNullable<Route['route']>['hash_policy']>[number] {
  return 'header' in key ? { header: { header_name: key.header } } : { connection_properties: { source_ip: true } };
}

/**
 * Routes for a vhost: annotation routes in order, then the catch-all to the port's own cluster (unless overridden).
 * A route hashes (for ring-hash clusters) on the key of the first target's Service that has one, else on `hash`
 * (the vhost's own Service's).
 */
export function buildRoutes(ownCluster: string, extra: readonly RouteSpec[], timeoutMs: number, hash?: HashKey): Route[] {
  const specs = [...extra];
  if (!specs.some((s) => s.prefix === '/')) specs.push({ prefix: '/', targets: [{ cluster: ownCluster, weight: 1, hash }] });
  return specs.map((spec) => {
    const only = spec.targets.length === 1 ? spec.targets[0] : undefined;
    const weights = normaliseWeights(spec.targets.map((t) => t.weight));
    const action = only
      ? { cluster: only.cluster, timeout: durationOf(timeoutMs) }
      : {
          weighted_clusters: { clusters: spec.targets.map((t, i) => ({ name: t.cluster, weight: { value: weights[i] } })) },
          timeout: durationOf(timeoutMs),
        };
    const key = spec.targets.find((t) => t.hash)?.hash ?? hash;
    const hashing = key ? { hash_policy: [hashPolicy(key)] } : {};
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
 * a domain from every later vhost that repeats it; returns the same objects where nothing was removed, and drops a
 * vhost that has no domain left.
 */
export function dedupeDomains(vhosts: readonly VirtualHost[]): { vhosts: VirtualHost[]; duplicates: DuplicateDomain[] } {
  return runNow(dedupeDomainsSteps(vhosts));
}

/** dedupeDomains as sliced work (slices.ts): it may pause every 1000 vhosts (a mesh-wide table has one per HTTP port). */
export function* dedupeDomainsSteps(vhosts: readonly VirtualHost[]): Sliced<{ vhosts: VirtualHost[]; duplicates: DuplicateDomain[] }> {
  const owner = new Map<string, string>();
  const duplicates: DuplicateDomain[] = [];
  const out: VirtualHost[] = [];
  for (const [n, vh] of vhosts.entries()) {
    if (n % 1000 === 999) yield;
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
    out.push(kept ? { ...vh, domains: kept } : vh);
  }
  // A vhost left with no domain is invalid in Envoy (domains needs at least one item): leave it out.
  return { vhosts: out.filter((vh) => (vh.domains?.length ?? 0) > 0), duplicates };
}
