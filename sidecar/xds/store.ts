// The xDS client's accepted resources: applies updates, derives EDS/RDS interest, checks warming, assembles VHDS tables, builds MeshConfig.
import { nodeCrypto } from '../builtins.ts';
import { TYPE_URL, type TypeUrl } from '../../proto/index.ts';
import type { ClusterConfig, ListenerConfig, MeshConfig, RouteTableConfig } from './model.ts';
import { clustersOfRoutes, type DecodedResource, KIND_LABEL } from './resources.ts';
import { quote } from './fields.ts';

type ByName<T extends TypeUrl> = Map<string, DecodedResource<T>>;

export interface Warmth {
  readonly warm: boolean;
  /** What is still missing, e.g. `RouteConfiguration "outbound/default"`, `ClusterLoadAssignment "outbound|80||…"`. */
  readonly missing: readonly string[];
}

export class ResourceStore {
  readonly clusters: ByName<typeof TYPE_URL.cluster> = new Map();
  readonly endpoints: ByName<typeof TYPE_URL.endpoint> = new Map();
  readonly listeners: ByName<typeof TYPE_URL.listener> = new Map();
  readonly routes: ByName<typeof TYPE_URL.route> = new Map();
  /**
   * VHDS: VirtualHost resources by resource name (`<route configuration name>/<vhost name>`). Kept whether or not
   * their table is here yet (it may come later); the server removes them.
   */
  readonly vhosts: ByName<typeof TYPE_URL.virtualHost> = new Map();
  /** Route tables assembled from a VHDS table and its VirtualHosts, reused until either changes. */
  private readonly assembled = new Map<string, { table: DecodedResource<typeof TYPE_URL.route>; generation: number; config: RouteTableConfig }>();
  /** Per route table name, bumped when one of its VirtualHosts changes. */
  private readonly vhostGenerations = new Map<string, number>();
  /** Types the server has answered at least once (CDS and LDS must be among them before the first publish). */
  readonly received = new Set<TypeUrl>();
  /** Built clusters, reused while neither the cluster nor its endpoints changed (stable identity for the data path). */
  private readonly built = new Map<string, { clusterVersion: string; endpointsVersion: string; config: ClusterConfig }>();

  private map<T extends TypeUrl>(typeUrl: T): ByName<T> {
    const maps = {
      [TYPE_URL.cluster]: this.clusters,
      [TYPE_URL.endpoint]: this.endpoints,
      [TYPE_URL.listener]: this.listeners,
      [TYPE_URL.route]: this.routes,
      [TYPE_URL.virtualHost]: this.vhosts,
    } as Record<TypeUrl, Map<string, DecodedResource>>;
    return maps[typeUrl] as unknown as ByName<T>;
  }

  /**
   * Applies a validated update. `fullState` (SotW CDS/LDS) replaces the whole type; otherwise resources are
   * upserted and `removed` names deleted. Afterwards EDS/RDS entries nobody references any more are dropped.
   */
  apply<T extends TypeUrl>(typeUrl: T, resources: readonly DecodedResource<T>[], removed: readonly string[], fullState: boolean): void {
    const m = this.map(typeUrl);
    if (fullState) m.clear();
    const eds = typeUrl === TYPE_URL.endpoint ? this.edsNames() : undefined;
    for (const n of removed) {
      m.delete(n);
      // Like Envoy: a cluster whose assignment the server removed has no endpoints (it is not left warming).
      if (eds?.has(n)) this.endpoints.set(n, { name: n, version: '', value: { name: n, version: '', endpoints: [] } });
    }
    for (const r of resources) m.set(r.name, r);
    if (typeUrl === TYPE_URL.virtualHost) {
      const tables = new Set<string>();
      for (const n of removed) tables.add(routeConfigOf(n));
      for (const r of resources as readonly DecodedResource<typeof TYPE_URL.virtualHost>[]) tables.add(r.value.routeConfigName);
      for (const t of tables) this.vhostGenerations.set(t, (this.vhostGenerations.get(t) ?? 0) + 1);
    }
    this.received.add(typeUrl);
    this.prune();
  }

  /** Whether VHDS is in use: a route table says its virtual hosts come that way, or VirtualHosts are held. */
  wantsVhds(): boolean {
    if (this.vhosts.size > 0) return true;
    for (const r of this.routes.values()) if (r.value.vhds) return true;
    return false;
  }

  /**
   * Errors an update of VirtualHosts would cause (checked before it is applied): a domain that another virtual host
   * of the same table already has, named by resource and field as a table's own duplicates are.
   */
  checkVirtualHosts(resources: readonly DecodedResource<typeof TYPE_URL.virtualHost>[], removed: readonly string[]): string[] {
    const incoming = new Map(resources.map((r) => [r.name, r]));
    const gone = new Set(removed);
    const tables = new Set(resources.map((r) => r.value.routeConfigName));
    const errors: string[] = [];
    for (const table of tables) {
      const owner = new Map<string, string>();
      const members = [...this.vhosts.values()].filter((r) => r.value.routeConfigName === table && !incoming.has(r.name) && !gone.has(r.name));
      for (const r of members) for (const d of r.value.vhost.domains) if (!owner.has(d)) owner.set(d, r.name);
      for (const r of [...incoming.values()].filter((x) => x.value.routeConfigName === table).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        r.value.vhost.domains.forEach((d, j) => {
          const other = owner.get(d);
          if (other !== undefined && other !== r.name)
            errors.push(`${KIND_LABEL[TYPE_URL.virtualHost]} ${quote(r.name)}: domains[${j}]: ${quote(d)} duplicates VirtualHost ${quote(other)}`);
          else owner.set(d, r.name);
        });
      }
    }
    return errors;
  }

  /** Per-resource versions of a type, for delta initial_resource_versions. */
  versionsOf(typeUrl: TypeUrl): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, r] of this.map(typeUrl)) out[name] = r.version;
    return out;
  }

  /** A version for a whole type computed from its resources (when a delta server sends no system_version_info). */
  digest(typeUrl: TypeUrl): string {
    const h = nodeCrypto.createHash('sha256');
    for (const [name, r] of [...this.map(typeUrl)].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(`${name}\0${r.version}\n`);
    return h.digest('hex').slice(0, 16);
  }

  /** The ClusterLoadAssignment names the EDS clusters need. */
  edsNames(): Set<string> {
    const out = new Set<string>();
    for (const c of this.clusters.values()) if (c.value.edsServiceName !== undefined) out.add(c.value.edsServiceName);
    return out;
  }

  /** The RouteConfiguration names the HTTP listeners reference through RDS. */
  rdsNames(): Set<string> {
    const out = new Set<string>();
    for (const l of this.listeners.values()) if (l.value.kind === 'http' && !l.value.inlineRoutes) out.add(l.value.routeConfigName);
    return out;
  }

  private prune(): void {
    const eds = this.edsNames();
    for (const n of this.endpoints.keys()) if (!eds.has(n)) this.endpoints.delete(n);
    const rds = this.rdsNames();
    for (const n of this.routes.keys()) if (!rds.has(n)) this.routes.delete(n);
    for (const n of this.assembled.keys()) if (!this.routes.has(n)) this.assembled.delete(n);
    for (const n of this.built.keys()) if (!this.clusters.has(n)) this.built.delete(n);
  }

  /** Warm when CDS and LDS have arrived, every RDS a listener names is here, and every cluster routed to has its CLA. */
  warmth(): Warmth {
    const missing: string[] = [];
    for (const t of [TYPE_URL.cluster, TYPE_URL.listener] as const)
      if (!this.received.has(t)) missing.push(`${KIND_LABEL[t]} (no response yet)`);
    const referenced = new Set<string>();
    for (const l of this.listeners.values()) {
      const v = l.value;
      if (v.kind === 'tcp') referenced.add(v.cluster);
      else {
        const received = v.inlineRoutes ?? this.routes.get(v.routeConfigName)?.value;
        const table = received?.vhds ? this.table(v.routeConfigName) : received;
        if (!received) missing.push(`${KIND_LABEL[TYPE_URL.route]} ${JSON.stringify(v.routeConfigName)}`);
        else if (!table) missing.push(`${KIND_LABEL[TYPE_URL.virtualHost]} resources of ${JSON.stringify(v.routeConfigName)} (no VHDS response yet)`);
        else for (const c of clustersOfRoutes(table)) referenced.add(c);
      }
    }
    for (const name of [...referenced].sort()) {
      const c = this.clusters.get(name);
      if (!c) missing.push(`${KIND_LABEL[TYPE_URL.cluster]} ${JSON.stringify(name)}`);
      else if (c.value.edsServiceName !== undefined && !this.endpoints.has(c.value.edsServiceName))
        missing.push(`${KIND_LABEL[TYPE_URL.endpoint]} ${JSON.stringify(c.value.edsServiceName)}`);
    }
    return { warm: missing.length === 0, missing };
  }

  /**
   * A route table as the data path gets it: a VHDS table with its VirtualHosts (after any it holds itself, sorted by
   * name, as the control plane orders a table), once the server has answered VHDS; undefined before that. The same
   * object while neither the table nor its VirtualHosts change (the data path rebuilds its index on a new one).
   */
  private table(name: string): RouteTableConfig | undefined {
    const r = this.routes.get(name);
    if (!r) return undefined;
    if (!r.value.vhds) return r.value;
    if (!this.received.has(TYPE_URL.virtualHost)) return undefined;
    const generation = this.vhostGenerations.get(name) ?? 0;
    const hit = this.assembled.get(name);
    if (hit && hit.table === r && hit.generation === generation) return hit.config;
    const members = [...this.vhosts.values()]
      .filter((v) => v.value.routeConfigName === name)
      .sort((a, b) => (a.value.vhost.name < b.value.vhost.name ? -1 : a.value.vhost.name > b.value.vhost.name ? 1 : 0));
    const h = nodeCrypto.createHash('sha256').update(`${r.version}\n`);
    for (const m of members) h.update(`${m.name}\0${m.version}\n`);
    const config: RouteTableConfig = Object.freeze({
      name,
      version: h.digest('hex').slice(0, 16),
      virtualHosts: Object.freeze([...r.value.virtualHosts, ...members.map((m) => m.value.vhost)]),
      vhds: true,
    });
    this.assembled.set(name, { table: r, generation, config });
    return config;
  }

  private cluster(r: DecodedResource<typeof TYPE_URL.cluster>): ClusterConfig {
    const eds = r.value.edsServiceName;
    if (eds === undefined) return r.value.config;
    const cla = this.endpoints.get(eds);
    const endpointsVersion = cla?.version ?? '';
    const cached = this.built.get(r.name);
    if (cached && cached.clusterVersion === r.version && cached.endpointsVersion === endpointsVersion) return cached.config;
    // The decoded list itself, not a copy (neither side changes it).
    const config: ClusterConfig = Object.freeze({
      ...r.value.config,
      endpoints: Object.freeze(cla?.value.endpoints ?? []),
      endpointsVersion,
    });
    this.built.set(r.name, { clusterVersion: r.version, endpointsVersion, config });
    return config;
  }

  /** The whole config as the data path consumes it. */
  build(versions: Readonly<Record<string, string>>): MeshConfig {
    const clusters = new Map<string, ClusterConfig>();
    for (const r of this.clusters.values()) clusters.set(r.name, this.cluster(r));
    const listeners = new Map<string, ListenerConfig>();
    for (const r of this.listeners.values()) listeners.set(r.name, r.value);
    const routes = new Map<string, RouteTableConfig>();
    for (const r of this.routes.values()) {
      const table = r.value.vhds ? this.table(r.name) : r.value;
      // A VHDS table whose VirtualHosts have not come yet is left out (the listener is not ready), never served empty.
      if (table) routes.set(r.name, table);
    }
    return Object.freeze({ clusters, listeners, routes, versions: Object.freeze({ ...versions }) });
  }
}

/** The route table a VHDS resource name belongs to (`<route configuration name>/<vhost name>`). */
function routeConfigOf(resourceName: string): string {
  const at = resourceName.lastIndexOf('/');
  return at < 0 ? resourceName : resourceName.slice(0, at);
}
