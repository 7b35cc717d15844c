// One upstream cluster: endpoints updated in place (surviving keep pools, removed drain) and an immutable picker.
import { buildPicker, EndpointLoad } from '../lb/index.ts';
import type { LbEndpoint, PickContext, Picker } from '../lb/index.ts';
import type { ClusterConfig, EndpointConfig, EndpointHealth } from '../xds/model.ts';
import type { ClusterRequestMetrics } from '../telemetry/metrics.ts';
import { logger } from '../log.ts';
import { EndpointPool } from './pool.ts';
import type { ConnectionGauge, Connector, PeerIdentities } from './pool.ts';

const log = logger('upstream');

/** What every endpoint of a cluster shares to open its pool: one object per cluster, not six fields per endpoint. */
interface PoolContext {
  readonly sourceIp: string;
  readonly gauge: ConnectionGauge;
  readonly connector: Connector | undefined;
  readonly peers: PeerIdentities;
}

/**
 * One endpoint of a cluster. A sidecar holds every endpoint of the mesh but sends to few, so its pool (connections,
 * PROXY header, socket set) is made when the first request or stream goes there.
 */
export class Endpoint implements LbEndpoint {
  readonly key: string;
  weight: number;
  health: EndpointHealth;
  config: EndpointConfig;
  readonly load: EndpointLoad;
  readonly connectTimeoutMs: number;
  private readonly ctx: PoolContext;
  private made: EndpointPool | undefined;
  /** Removed from its cluster: a pool made now (a caller still holding this endpoint) drains at once. */
  private retired = false;

  constructor(config: EndpointConfig, connectTimeoutMs: number, ctx: PoolContext) {
    this.key = endpointKey(config);
    this.config = config;
    this.weight = config.weight;
    this.health = config.health;
    this.load = new EndpointLoad();
    this.connectTimeoutMs = connectTimeoutMs;
    this.ctx = ctx;
  }

  /** The endpoint's connection pool, made on first use. */
  get pool(): EndpointPool {
    return (this.made ??= this.makePool());
  }

  /** The pool if one was made (undefined: nothing was ever sent here). */
  get madePool(): EndpointPool | undefined {
    return this.made;
  }

  /**
   * The peer identities the cluster accepts changed: the pool, whose connections verified the old ones, drains (its
   * in-flight requests and TCP streams finish), and the next request makes a new pool that checks the new ones.
   */
  renewPool(): { readonly pool: EndpointPool; readonly drained: Promise<void> } | undefined {
    const pool = this.made;
    if (pool === undefined) return undefined;
    this.made = undefined;
    return { pool, drained: pool.drain() };
  }

  /** Removed from its cluster: drains the pool if there is one (resolves when it has closed). */
  retire(): Promise<void> | undefined {
    this.retired = true;
    return this.made?.drain();
  }

  private makePool(): EndpointPool {
    const { config, ctx } = this;
    const pool = new EndpointPool(
      {
        address: config.address,
        port: config.port,
        inboundPort: config.inboundPort,
        proxyProtocol: config.proxyProtocol,
        sourceIp: ctx.sourceIp,
        connectTimeoutMs: this.connectTimeoutMs,
        peers: ctx.peers,
      },
      this.load,
      ctx.gauge,
      ctx.connector,
    );
    if (this.retired) void pool.drain();
    return pool;
  }
}

/** New endpoints start from the median latency of the measured ones they join (see EndpointLoad.seed). */
function seedLoads(added: readonly Endpoint[], all: ReadonlyMap<string, Endpoint>): void {
  const measured: number[] = [];
  for (const e of all.values()) if (e.load.total > 0 && e.health === 'healthy') measured.push(e.load.latencyMs);
  if (measured.length === 0) return;
  measured.sort((a, b) => a - b);
  const median = measured[measured.length >> 1] as number;
  for (const e of added) e.load.seed(median);
}

export function endpointKey(e: EndpointConfig): string {
  return `${e.address}:${e.port}`;
}

export interface EndpointStat {
  readonly address: string;
  readonly port: number;
  readonly inboundPort: number | undefined;
  readonly health: EndpointHealth;
  readonly weight: number;
  readonly active: number;
  readonly connections: number;
  readonly latencyMs: number;
  /** Requests (and TCP streams) finished, and those that failed here. */
  readonly total: number;
  readonly failed: number;
}

export interface ClusterStat {
  readonly name: string;
  readonly lbPolicy: string;
  readonly protocol: string;
  readonly version: string;
  readonly endpointsVersion: string;
  readonly endpoints: readonly EndpointStat[];
  /** Removed endpoints still finishing in-flight requests. */
  readonly draining: number;
}

/** A cluster's PoolContext, and the connection gauge of its pools (skein_upstream_connections, reused requests). */
class ClusterPools implements PoolContext, ConnectionGauge {
  readonly sourceIp: string;
  readonly connector: Connector | undefined;
  /** The peer identities new connections accept; the cluster updates `ids` in place. */
  readonly peers: PeerIdentities = { ids: [] };
  private readonly metrics: ClusterRequestMetrics;

  constructor(sourceIp: string, connector: Connector | undefined, metrics: ClusterRequestMetrics) {
    this.sourceIp = sourceIp;
    this.connector = connector;
    this.metrics = metrics;
  }

  get gauge(): ConnectionGauge {
    return this;
  }

  inc(): void {
    this.metrics.connections.inc();
  }

  dec(): void {
    this.metrics.connections.dec();
  }

  reused(): void {
    this.metrics.reused.inc();
  }
}

export class Cluster {
  config: ClusterConfig;
  readonly metrics: ClusterRequestMetrics;
  private readonly pools: ClusterPools;
  private endpoints = new Map<string, Endpoint>();
  /** Removed endpoints' pools still finishing in-flight work; made on the first removal. */
  private drainingPools: Set<EndpointPool> | undefined;
  /** Undefined while no endpoint is healthy. Replaced whole on every change. */
  picker: Picker<Endpoint> | undefined;

  constructor(config: ClusterConfig, sourceIp: string, metrics: ClusterRequestMetrics, connector?: Connector) {
    this.config = config;
    this.metrics = metrics;
    this.pools = new ClusterPools(sourceIp, connector, metrics);
    this.update(config);
  }

  /** Applies a new cluster config; endpoints that survive keep their pools and load stats. */
  update(config: ClusterConfig): void {
    // New connections check the latest list. When it no longer accepts an identity the old one did, connections
    // that may have verified that identity are not reused (as Envoy replaces a cluster whose SAN matchers changed):
    // each endpoint's pool drains and a new one is made. A list that only grew (a rollout to a new service account)
    // keeps them, and so does a plaintext cluster.
    const ids = config.identities ?? [];
    const identitiesChanged = this.pools.connector !== undefined && narrowed(this.pools.peers.ids, ids);
    this.pools.peers.ids = ids;
    const old = this.endpoints;
    const next = new Map<string, Endpoint>();
    const added: Endpoint[] = [];
    for (const ec of effectiveEndpoints(config)) {
      const key = endpointKey(ec);
      if (next.has(key)) continue;
      const prev = old.get(key);
      if (prev !== undefined && prev.config.inboundPort === ec.inboundPort && prev.config.proxyProtocol === ec.proxyProtocol && prev.connectTimeoutMs === config.connectTimeoutMs) {
        prev.config = ec;
        prev.weight = ec.weight;
        // Back in rotation after being out of it: its failures are forgiven (its latency history is kept).
        if (ec.health === 'healthy' && prev.health !== 'healthy') prev.load.forgive();
        prev.health = ec.health;
        if (identitiesChanged) this.trackDraining(prev.renewPool());
        next.set(key, prev);
      } else {
        const e = new Endpoint(ec, config.connectTimeoutMs, this.pools);
        next.set(key, e);
        added.push(e);
      }
    }
    if (added.length > 0 && added.length < next.size) seedLoads(added, next);
    for (const [key, ep] of old) {
      if (next.get(key) === ep) continue;
      const pool = ep.madePool;
      const drained = ep.retire();
      if (drained !== undefined && pool !== undefined) this.trackDraining({ pool, drained });
    }
    this.config = config;
    this.endpoints = next;
    const picker = buildPicker(config.lbPolicy, [...next.values()]);
    this.picker = picker;
    if (log.debugEnabled) {
      log.debug('cluster updated', { cluster: config.name, endpoints: next.size, healthy: picker === undefined ? 0 : 'some' });
    }
  }

  /** Keeps a draining pool reachable (for close() and the draining count) until it has closed. */
  private trackDraining(d: { readonly pool: EndpointPool; readonly drained: Promise<void> } | undefined): void {
    if (d === undefined) return;
    const draining = (this.drainingPools ??= new Set());
    draining.add(d.pool);
    void d.drained.then(() => draining.delete(d.pool));
  }

  pick(ctx: PickContext): Endpoint | undefined {
    return this.picker?.pick(ctx);
  }

  /**
   * For a retry: the endpoint other than `failed` that costs least now (P2C's measure), preferring those not ejected
   * after failures; among healthy ones, else (as the picker falls back) serving-terminating ones.
   */
  another(failed: Endpoint): Endpoint | undefined {
    let best: Endpoint | undefined;
    let bestRank = Infinity;
    let bestCost = Infinity;
    for (const e of this.endpoints.values()) {
      if (e === failed || !(e.weight > 0) || (e.health !== 'healthy' && e.health !== 'draining')) continue;
      const rank = (e.health === 'healthy' ? 0 : 2) + (e.load.ejected ? 1 : 0);
      const cost = e.load.cost() / e.weight;
      if (rank < bestRank || (rank === bestRank && cost < bestCost)) [best, bestRank, bestCost] = [e, rank, cost];
    }
    return best;
  }

  endpoint(key: string): Endpoint | undefined {
    return this.endpoints.get(key);
  }

  stat(): ClusterStat {
    const c = this.config;
    return {
      name: c.name,
      lbPolicy: c.lbPolicy,
      protocol: c.protocol,
      version: c.version,
      endpointsVersion: c.endpointsVersion,
      draining: this.drainingPools?.size ?? 0,
      endpoints: [...this.endpoints.values()].map((e) => ({
        address: e.config.address,
        port: e.config.port,
        inboundPort: e.config.inboundPort,
        health: e.health,
        weight: e.weight,
        active: e.madePool?.active ?? 0,
        connections: e.madePool?.connections ?? 0,
        latencyMs: Math.round(e.load.latencyMs * 1000) / 1000,
        total: e.load.total,
        failed: e.load.failed,
        // Only P2C takes ejected endpoints out of its choice (see EJECT_BASE_MS).
        ...(c.lbPolicy === 'p2c-ewma' ? { ejectedMs: e.load.ejectedForMs } : {}),
      })),
    };
  }

  /** Drains every pool (in-flight requests finish) and waits up to `ms`, then closes what is left. */
  async close(ms: number): Promise<void> {
    const pools: EndpointPool[] = [];
    for (const e of this.endpoints.values()) {
      void e.retire();
      if (e.madePool !== undefined) pools.push(e.madePool);
    }
    if (this.drainingPools !== undefined) pools.push(...this.drainingPools);
    this.picker = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(pools.map((p) => p.drain())),
      new Promise<void>((r) => {
        // Unref'd: a removed cluster's long drain must not keep a stopping process alive (shutdown closes it anew).
        timer = setTimeout(r, ms).unref();
      }),
    ]);
    clearTimeout(timer);
    for (const p of pools) p.close();
  }
}

/** Whether `next` refuses an identity `prev` accepted (an empty list accepts any identity of the trust domain). */
function narrowed(prev: readonly string[], next: readonly string[]): boolean {
  if (next.length === 0) return false;
  if (prev.length === 0) return true;
  const now = new Set(next);
  return prev.some((id) => !now.has(id));
}

/** A DNS cluster with no endpoints yet is served from its host and port (ExternalName). */
function effectiveEndpoints(config: ClusterConfig): readonly EndpointConfig[] {
  if (config.endpoints.length > 0 || config.kind !== 'dns' || config.dns === undefined) return config.endpoints;
  return [{ address: config.dns.host, port: config.dns.port, weight: 1, health: 'healthy' }];
}
