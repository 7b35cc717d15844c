// Test helpers: a SnapshotCache that publishes hand-made snapshots of real packed Envoy resources.
import { createHash } from 'node:crypto';
import { type Node__Output, pack, TYPE_URL, type TypeUrl } from '../../../proto/index.ts';
import type {
  ResourcesByName,
  ScopeKey,
  ScopeResources,
  Snapshot,
  SnapshotCache,
  VersionedResource,
} from '../../../control-plane/cache/snapshot.ts';

export function resource(typeUrl: TypeUrl, message: Record<string, unknown>): VersionedResource {
  const any = pack(typeUrl, message);
  const name = String(message.name ?? message.cluster_name);
  return { name, version: createHash('sha256').update(any.value).digest('hex').slice(0, 12), any, message };
}

export const cluster = (name: string, connectTimeoutSeconds = 1): VersionedResource =>
  resource(TYPE_URL.cluster, {
    name,
    type: 'EDS',
    connect_timeout: { seconds: connectTimeoutSeconds },
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
  });

export const endpoints = (name: string, ...ips: string[]): VersionedResource =>
  resource(TYPE_URL.endpoint, {
    cluster_name: name,
    endpoints: [
      {
        load_balancing_weight: { value: 1 },
        lb_endpoints: ips.map((ip) => ({
          endpoint: { address: { socket_address: { address: ip, port_value: 8080 } } },
          health_status: 'HEALTHY',
        })),
      },
    ],
  });

export const listener = (name: string, port = 15001): VersionedResource =>
  resource(TYPE_URL.listener, { name, address: { socket_address: { address: '0.0.0.0', port_value: port } } });

export const route = (name: string, cluster = 'c'): VersionedResource =>
  resource(TYPE_URL.route, {
    name,
    virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }],
  });

/** A route table with one virtual host per entry: host name → the clusters its one route splits across. */
export const routeTable = (name: string, hosts: Record<string, string[]>): VersionedResource =>
  resource(TYPE_URL.route, {
    name,
    virtual_hosts: Object.entries(hosts).map(([host, clusters]) => ({
      name: host,
      domains: [host],
      routes: [
        {
          match: { prefix: '/' },
          route: clusters.length === 1 ? { cluster: clusters[0] } : { weighted_clusters: { clusters: clusters.map((c) => ({ name: c, weight: { value: 1 } })) } },
        },
      ],
    })),
  });

/** Per type: resources to put (by name) and names to delete. */
export type Update = Partial<Record<TypeUrl, { put?: VersionedResource[]; remove?: string[] }>>;

/** The scope the ADS test suites publish to. */
export const TEST_SCOPE = 'envoy/default';

/** The snapshot the ADS test suites start from: clusters a and b, their endpoints, one listener and its routes. */
export const baseSnapshot = (): Record<string, Update> => ({
  [TEST_SCOPE]: {
    [TYPE_URL.cluster]: { put: [cluster('a'), cluster('b')] },
    [TYPE_URL.endpoint]: { put: [endpoints('a', '10.0.0.1'), endpoints('b', '10.0.0.2')] },
    [TYPE_URL.listener]: { put: [listener('virtualOutbound')] },
    [TYPE_URL.route]: { put: [route('outbound/default', 'a')] },
  },
});

export class FakeCache implements SnapshotCache {
  private snapshot: Snapshot;
  private readonly listeners = new Set<(s: Snapshot) => void>();
  scopeFor: (node: Node__Output) => ScopeKey = (node) =>
    node.user_agent_name.startsWith('gRPC') ? 'proxyless' : 'envoy/default';

  constructor(initial: Record<ScopeKey, Update> = {}) {
    this.snapshot = { serial: 0, scopes: new Map(), changes: new Map(), changedAt: performance.now() };
    this.publish(initial);
  }

  current(): Snapshot {
    return this.snapshot;
  }

  subscribe(listener: (s: Snapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  scopeOf(node: Node__Output): ScopeKey {
    return this.scopeFor(node);
  }

  /** Scopes released by ended streams, in order. */
  readonly released: ScopeKey[] = [];

  releaseScope(scope: ScopeKey): void {
    this.released.push(scope);
  }

  /** Builds the next snapshot sharing unchanged maps, with change lists, and notifies subscribers. */
  publish(updates: Record<ScopeKey, Update>): Snapshot {
    const prev = this.snapshot;
    const scopes = new Map(prev.scopes);
    const changes = new Map<ScopeKey, Map<TypeUrl, Set<string>>>();
    for (const [scope, update] of Object.entries(updates)) {
      const before = prev.scopes.get(scope);
      const next = new Map<TypeUrl, ResourcesByName>(before ?? Object.values(TYPE_URL).map((t) => [t, new Map()]));
      const scopeChanges = new Map<TypeUrl, Set<string>>();
      for (const [typeUrl, { put = [], remove = [] } = {}] of Object.entries(update) as [TypeUrl, Update[TypeUrl]][]) {
        const map = new Map(next.get(typeUrl));
        const changed = new Set<string>();
        for (const r of put) {
          if (map.get(r.name)?.version !== r.version) changed.add(r.name);
          map.set(r.name, r);
        }
        for (const name of remove) if (map.delete(name)) changed.add(name);
        if (changed.size > 0) {
          next.set(typeUrl, map);
          scopeChanges.set(typeUrl, changed);
        }
      }
      scopes.set(scope, next as ScopeResources);
      if (before) changes.set(scope, scopeChanges);
    }
    this.snapshot = { serial: prev.serial + 1, scopes, changes, changedAt: performance.now() };
    for (const l of this.listeners) l(this.snapshot);
    return this.snapshot;
  }
}
