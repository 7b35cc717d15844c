// Combines per-Service translation results into per-scope resource maps (the whole mesh, from scratch).
import type { VirtualHost } from '../../proto/index.ts';
import { TYPE_URL, type TypeUrl } from '../../proto/index.ts';
import type { ServiceKey } from '../registry/registry.ts';
import type { ServiceResources, ServiceVirtualHost, TranslationProblem } from './build.ts';
import { buildVirtualOutbound, VIRTUAL_OUTBOUND } from './listener.ts';
import { envoyScope, outboundRouteName, PROXYLESS_SCOPE } from './names.ts';
import { buildRouteConfiguration, dedupeDomainsSteps } from './route.ts';
import { runNow, type Sliced } from '../slices.ts';

export type MessagesByName = Map<string, object>;
export type ScopeMessages = Map<TypeUrl, MessagesByName>;

export interface Assembled {
  readonly scopes: Map<string, ScopeMessages>;
  /** Conflicts between Services (duplicate domains or listener names); the earlier Service by key keeps the name. */
  readonly problems: TranslationProblem[];
}

/** A vhost with the namespace of the Service it belongs to, as the route tables take them. */
export interface OwnedVirtualHost {
  readonly service: ServiceKey;
  readonly namespace: string;
  readonly vhost: ServiceVirtualHost;
}

/** Orders vhosts by name (`<fqdn>:<port>`), the order every route table uses. */
export function sortVirtualHosts(list: OwnedVirtualHost[]): OwnedVirtualHost[] {
  return list.sort((a, b) => (a.vhost.name < b.vhost.name ? -1 : a.vhost.name > b.vhost.name ? 1 : 0));
}

/**
 * The vhosts of `outbound/<namespace>`: local variants for the namespace's own Services, duplicates removed.
 * `sorted` must come from sortVirtualHosts.
 */
export function namespaceVirtualHosts(
  sorted: readonly OwnedVirtualHost[],
  namespace: string,
): { vhosts: VirtualHost[]; problems: TranslationProblem[] } {
  return runNow(namespaceVirtualHostsSteps(sorted, namespace));
}

/** namespaceVirtualHosts as sliced work (slices.ts). */
export function* namespaceVirtualHostsSteps(
  sorted: readonly OwnedVirtualHost[],
  namespace: string,
): Sliced<{ vhosts: VirtualHost[]; problems: TranslationProblem[] }> {
  const chosen = sorted.map((o) => (o.namespace === namespace ? o.vhost.local : o.vhost.remote));
  const { vhosts, duplicates } = yield* dedupeDomainsSteps(chosen);
  const ownerOf = new Map(sorted.map((o) => [o.vhost.name, o.service]));
  const problems = duplicates.map((d) => ({
    service: ownerOf.get(d.removedFrom) ?? (d.removedFrom as ServiceKey),
    code: 'SKEIN_TRANSLATE_DUPLICATE_DOMAIN',
    message: `route table ${outboundRouteName(namespace)}: domain "${d.domain}" of ${d.removedFrom} is already served by ${d.keptBy}; removed from ${d.removedFrom}`,
  }));
  return { vhosts, problems };
}

/** Adds named resources in Service-key order; a name another Service already holds is reported and skipped. */
export function claimNames<T extends { name?: string }>(
  into: Map<string, T>,
  owners: Map<string, ServiceKey>,
  service: ServiceKey,
  items: readonly T[],
  kind: string,
  problems: TranslationProblem[],
): void {
  for (const item of items) {
    const name = item.name ?? '';
    const owner = owners.get(name);
    if (owner !== undefined && owner !== service) {
      problems.push({
        service,
        code: 'SKEIN_TRANSLATE_DUPLICATE_NAME',
        message: `${kind} "${name}" of Service ${service} is already published by Service ${owner}; skipped`,
      });
      continue;
    }
    owners.set(name, service);
    into.set(name, item);
  }
}

/** Builds every scope from scratch: `envoy/<ns>` for each namespace with Services or listed, and `proxyless`. */
export function assemble(results: Iterable<ServiceResources>, extraNamespaces: Iterable<string> = []): Assembled {
  const list = [...results].filter((r) => r.exists).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const problems: TranslationProblem[] = [];
  const envoyClusters: MessagesByName = new Map();
  const proxylessClusters: MessagesByName = new Map();
  const endpoints: MessagesByName = new Map();
  const tcpListeners: MessagesByName = new Map();
  const proxylessListeners: MessagesByName = new Map();
  const proxylessRoutes: MessagesByName = new Map();
  const owners = {
    cds: new Map<string, ServiceKey>(),
    pcds: new Map<string, ServiceKey>(),
    eds: new Map<string, ServiceKey>(),
    lds: new Map<string, ServiceKey>(),
    plds: new Map<string, ServiceKey>(),
    prds: new Map<string, ServiceKey>(),
  };
  const vhosts: OwnedVirtualHost[] = [];
  const namespaces = new Set<string>(extraNamespaces);
  for (const r of list) {
    namespaces.add(r.namespace);
    claimNames(envoyClusters, owners.cds, r.key, r.clusters.envoy, 'cluster', problems);
    claimNames(proxylessClusters, owners.pcds, r.key, r.clusters.proxyless, 'cluster', []);
    claimNames(endpoints, owners.eds, r.key, r.endpoints.map((e) => ({ ...e, name: e.cluster_name })), 'endpoints', []);
    claimNames(tcpListeners, owners.lds, r.key, r.tcpListeners, 'listener', problems);
    claimNames(proxylessListeners, owners.plds, r.key, r.proxyless.listeners, 'listener', problems);
    claimNames(proxylessRoutes, owners.prds, r.key, r.proxyless.routes, 'route table', []);
    for (const vhost of r.virtualHosts) vhosts.push({ service: r.key, namespace: r.namespace, vhost });
  }
  // ClusterLoadAssignments carry no `name` field: drop the helper key again.
  for (const [name, cla] of endpoints) {
    const { name: _drop, ...rest } = cla as { name?: string };
    endpoints.set(name, rest);
  }
  sortVirtualHosts(vhosts);

  const scopes = new Map<string, ScopeMessages>();
  for (const ns of [...namespaces].sort()) {
    const routes = namespaceVirtualHosts(vhosts, ns);
    problems.push(...routes.problems);
    const listeners: MessagesByName = new Map(tcpListeners);
    listeners.set(VIRTUAL_OUTBOUND, buildVirtualOutbound(ns));
    const rds: MessagesByName = new Map([[outboundRouteName(ns), buildRouteConfiguration(outboundRouteName(ns), routes.vhosts)]]);
    scopes.set(envoyScope(ns), scopeMessages(envoyClusters, endpoints, listeners, rds));
  }
  scopes.set(PROXYLESS_SCOPE, scopeMessages(proxylessClusters, endpoints, proxylessListeners, proxylessRoutes));
  return { scopes, problems: dedupeProblems(problems) };
}

function scopeMessages(cds: MessagesByName, eds: MessagesByName, lds: MessagesByName, rds: MessagesByName): ScopeMessages {
  return new Map<TypeUrl, MessagesByName>([
    [TYPE_URL.cluster, cds],
    [TYPE_URL.endpoint, eds],
    [TYPE_URL.listener, lds],
    [TYPE_URL.route, rds],
  ]);
}

export function dedupeProblems(problems: readonly TranslationProblem[]): TranslationProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const id = `${p.service}\u0000${p.message}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
