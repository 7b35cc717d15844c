// One upstream cluster: endpoints updated in place (surviving keep pools, removed drain) and an immutable picker.
import { buildPicker, EndpointLoad } from '../lb/index.ts';
import type { LbEndpoint, PickContext, Picker } from '../lb/index.ts';
import type { ClusterConfig, EndpointConfig, EndpointHealth } from '../xds/model.ts';
import type { ClusterRequestMetrics } from '../telemetry/metrics.ts';
import { logger } from '../log.ts';
import { EndpointPool } from './pool.ts';
import type { ConnectionGauge, Connector, PeerIdentities } from './pool.ts';

const log = logger('upstream');

export class Endpoint implements LbEndpoint {
  readonly key: string;
  weight: number;
  health: EndpointHealth;
  config: EndpointConfig;
  readonly load: EndpointLoad;
  readonly pool: EndpointPool;

  constructor(
    config: EndpointConfig,
    sourceIp: string,
    connectTimeoutMs: number,
    gauge: ConnectionGauge,
    connector?: Connector,
    peers?: PeerIdentities,
  ) {
    this.key = endpointKey(config);
    this.config = config;
    this.weight = config.weight;
    this.health = config.health;
    this.load = new EndpointLoad();
    this.pool = new EndpointPool(
      { address: config.address, port: config.port, inboundPort: config.inboundPort, sourceIp, connectTimeoutMs, ...(peers ? { peers } : {}) },
      this.load,
      gauge,
      connector,
    );
  }
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

export class Cluster {
  config: ClusterConfig;
  readonly metrics: ClusterRequestMetrics;
  private readonly sourceIp: string;
  private readonly gauge: ConnectionGauge;
  private readonly connector: Connector | undefined;
  /** Shared by this cluster's pools: the peer identities new connections accept. */
  private readonly peers: PeerIdentities = { ids: [] };
  private endpoints = new Map<string, Endpoint>();
  private readonly drainingPools = new Set<EndpointPool>();
  /** Undefined while no endpoint is healthy. Replaced whole on every change. */
  picker: Picker<Endpoint> | undefined;

  constructor(config: ClusterConfig, sourceIp: string, metrics: ClusterRequestMetrics, connector?: Connector) {
    this.config = config;
    this.sourceIp = sourceIp;
    this.metrics = metrics;
    this.connector = connector;
    this.gauge = { inc: () => metrics.connections.inc(), dec: () => metrics.connections.dec(), reused: () => metrics.reused.inc() };
    this.update(config);
  }

  /** Applies a new cluster config; endpoints that survive keep their pools and load stats. */
  update(config: ClusterConfig): void {
    // Connections already open keep the identity they verified; new ones check the latest list.
    this.peers.ids = config.identities ?? [];
    const old = this.endpoints;
    const next = new Map<string, Endpoint>();
    for (const ec of effectiveEndpoints(config)) {
      const key = endpointKey(ec);
      if (next.has(key)) continue;
      const prev = old.get(key);
      if (prev !== undefined && prev.config.inboundPort === ec.inboundPort && prev.pool.target.connectTimeoutMs === config.connectTimeoutMs) {
        prev.config = ec;
        prev.weight = ec.weight;
        prev.health = ec.health;
        next.set(key, prev);
      } else {
        next.set(key, new Endpoint(ec, this.sourceIp, config.connectTimeoutMs, this.gauge, this.connector, this.peers));
      }
    }
    for (const [key, ep] of old) {
      if (next.get(key) === ep) continue;
      this.drainingPools.add(ep.pool);
      void ep.pool.drain().then(() => this.drainingPools.delete(ep.pool));
    }
    this.config = config;
    this.endpoints = next;
    const picker = buildPicker(config.lbPolicy, [...next.values()]);
    this.picker = picker;
    if (log.debugEnabled) {
      log.debug('cluster updated', { cluster: config.name, endpoints: next.size, healthy: picker === undefined ? 0 : 'some' });
    }
  }

  pick(ctx: PickContext): Endpoint | undefined {
    return this.picker?.pick(ctx);
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
      draining: this.drainingPools.size,
      endpoints: [...this.endpoints.values()].map((e) => ({
        address: e.config.address,
        port: e.config.port,
        inboundPort: e.config.inboundPort,
        health: e.health,
        weight: e.weight,
        active: e.pool.active,
        connections: e.pool.connections,
        latencyMs: Math.round(e.load.latencyMs * 1000) / 1000,
      })),
    };
  }

  /** Drains every pool (in-flight requests finish) and waits up to `ms`, then closes what is left. */
  async close(ms: number): Promise<void> {
    const pools = [...this.endpoints.values()].map((e) => e.pool).concat([...this.drainingPools]);
    this.picker = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(pools.map((p) => p.drain())),
      new Promise<void>((r) => {
        timer = setTimeout(r, ms);
      }),
    ]);
    clearTimeout(timer);
    for (const p of pools) p.close();
  }
}

/** A DNS cluster with no endpoints yet is served from its host and port (ExternalName). */
function effectiveEndpoints(config: ClusterConfig): readonly EndpointConfig[] {
  if (config.endpoints.length > 0 || config.kind !== 'dns' || config.dns === undefined) return config.endpoints;
  return [{ address: config.dns.host, port: config.dns.port, weight: 1, health: 'healthy' }];
}
