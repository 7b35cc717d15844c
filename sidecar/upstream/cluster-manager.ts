// Every cluster by name, kept in step with MeshConfig; the base dispatch (pick an endpoint, send on its pool).
import type { PickContext } from '../lb/index.ts';
import { LocalReplyError, mtlsHint, noCluster, noHealthyEndpoint } from '../listeners/errors.ts';
import type { DataPlaneMetrics } from '../telemetry/metrics.ts';
import type { ClusterConfig } from '../xds/model.ts';
import { Cluster } from './cluster.ts';
import type { ClusterStat, Endpoint } from './cluster.ts';
import type { Dispatch, DispatchHandler, DispatchRequest } from './dispatch.ts';
import type { Connector } from './pool.ts';

export class ClusterManager {
  private readonly clusters = new Map<string, Cluster>();
  private readonly sourceIp: string;
  private readonly metrics: DataPlaneMetrics;
  private readonly pickCtx: PickContext = { hash: undefined };
  /** The base of the request path: interceptors wrap this. */
  readonly dispatch: Dispatch;

  private readonly connector: Connector | undefined;

  /** `connector` opens connections to endpoints (default plain TCP; mTLS from connector.ts). */
  constructor(sourceIp: string, metrics: DataPlaneMetrics, connector?: Connector) {
    this.sourceIp = sourceIp;
    this.metrics = metrics;
    this.connector = connector;
    this.dispatch = (req, handler) => this.send(req, handler);
  }

  /** Adds, updates (in place) and removes clusters; removed clusters drain in the background. */
  update(configs: ReadonlyMap<string, ClusterConfig>, drainMs = 30_000): void {
    for (const [name, config] of configs) {
      const c = this.clusters.get(name);
      if (c === undefined) this.clusters.set(name, new Cluster(config, this.sourceIp, this.metrics.cluster('outbound', name), this.connector));
      else if (c.config !== config) c.update(config);
    }
    for (const [name, c] of this.clusters) {
      if (configs.has(name)) continue;
      this.clusters.delete(name);
      void c.close(drainMs);
    }
  }

  get(name: string): Cluster | undefined {
    return this.clusters.get(name);
  }

  /** Picks an endpoint of a cluster (undefined: no cluster or none healthy). */
  pick(cluster: Cluster, hash: string | undefined): Endpoint | undefined {
    this.pickCtx.hash = hash;
    return cluster.pick(this.pickCtx);
  }

  /** The endpoint a request to cluster `name` goes to, or the local reply saying why there is none. */
  choose(name: string, hash: string | undefined): { cluster: Cluster; endpoint: Endpoint } | LocalReplyError {
    const cluster = this.clusters.get(name);
    if (cluster === undefined) return noCluster(name);
    const endpoint = this.pick(cluster, hash);
    if (endpoint === undefined) return noHealthyEndpoint(name);
    return { cluster, endpoint };
  }

  private send(req: DispatchRequest, handler: DispatchHandler): void {
    const chosen = this.choose(req.cluster, req.hash);
    if (chosen instanceof LocalReplyError) {
      handler.onResponseError(chosen);
      return;
    }
    this.sendTo(chosen.cluster, chosen.endpoint, req, handler, true);
  }

  private sendTo(cluster: Cluster, endpoint: Endpoint, req: DispatchRequest, handler: DispatchHandler, mayRetry: boolean): void {
    const h2 = req.wantsH2 || cluster.config.protocol === 'http2';
    let h = handler;
    // Without mTLS (--mtls off), a peer sidecar that enforces STRICT refuses the connection (a peer also running
    // --mtls off accepts it): when that fails, say so instead of reporting a bare reset.
    if (this.connector === undefined && cluster.config.mtlsMode === 'STRICT' && endpoint.config.inboundPort !== undefined) h = withMtlsHint(h, req.cluster);
    // A connection that could not be made carried nothing: the request goes once more, to another endpoint (as
    // Envoy's connect-failure retry). An HTTP/1.1 body is read only once connected; an HTTP/2 one from the start.
    if (mayRetry && (req.body === null || !h2)) h = this.retryOnConnectFailure(cluster, endpoint, req, h);
    endpoint.pool.request(req, h, h2);
  }

  private retryOnConnectFailure(cluster: Cluster, failed: Endpoint, req: DispatchRequest, handler: DispatchHandler): DispatchHandler {
    return {
      onRequestStart: (c) => handler.onRequestStart(c),
      onResponseStart: (s, hd) => handler.onResponseStart(s, hd),
      onResponseData: (chunk) => handler.onResponseData(chunk),
      onResponseEnd: (t) => handler.onResponseEnd(t),
      onResponseError: (e) => {
        if (e.code === 'SKEIN_UPSTREAM_CONNECT' && this.clusters.get(req.cluster) === cluster) {
          for (let tries = 0; tries < 3; tries++) {
            const other = this.pick(cluster, req.hash);
            if (other === undefined) break;
            if (other === failed) continue;
            this.metrics.connectRetries.inc();
            this.sendTo(cluster, other, req, handler, false);
            return;
          }
        }
        handler.onResponseError(e);
      },
    };
  }

  stats(): ClusterStat[] {
    return [...this.clusters.values()].map((c) => c.stat());
  }

  async close(drainMs: number): Promise<void> {
    const all = [...this.clusters.values()];
    this.clusters.clear();
    await Promise.all(all.map((c) => c.close(drainMs)));
  }
}

/** The handler, with the local replies for a failed connection or reset explaining the likely mTLS mismatch. */
function withMtlsHint(handler: DispatchHandler, cluster: string): DispatchHandler {
  return {
    onRequestStart: (c) => handler.onRequestStart(c),
    onResponseStart: (s, h) => handler.onResponseStart(s, h),
    onResponseData: (chunk) => handler.onResponseData(chunk),
    onResponseEnd: (t) => handler.onResponseEnd(t),
    onResponseError: (e) => handler.onResponseError(e.reason === 'upstream_reset' || e.reason === 'upstream_connect_error' ? mtlsHint(e, cluster) : e),
  };
}
