// Every cluster by name, kept in step with MeshConfig; the base dispatch (pick an endpoint, send on its pool).
import type { PickContext } from '../lb/index.ts';
import { type LocalReplyError, mtlsHint, noCluster, noHealthyEndpoint, protocolHint } from '../listeners/errors.ts';
import type { DataPlaneMetrics } from '../telemetry/metrics.ts';
import type { ClusterConfig } from '../xds/model.ts';
import { Cluster } from './cluster.ts';
import type { ClusterStat, Endpoint } from './cluster.ts';
import type { Dispatch, DispatchController, DispatchHandler, DispatchRequest, Headers } from './dispatch.ts';
import type { Connector } from './pool.ts';
import { REASON_HEADER } from '../listeners/local-reply.ts';

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
      this.retiring.add(c);
      void c.close(drainMs).finally(() => this.retiring.delete(c));
    }
  }

  /** Removed clusters still draining their connections in the background (closed with the rest at shutdown). */
  private readonly retiring = new Set<Cluster>();

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

  /** The base dispatch: per request, so it allocates nothing unless a retry or a hint may be needed (see choose()). */
  private send(req: DispatchRequest, handler: DispatchHandler): void {
    const cluster = this.clusters.get(req.cluster);
    if (cluster === undefined) {
      handler.onResponseError(noCluster(req.cluster));
      return;
    }
    const endpoint = this.pick(cluster, req.hash);
    if (endpoint === undefined) {
      handler.onResponseError(noHealthyEndpoint(req.cluster));
      return;
    }
    this.sendTo(cluster, endpoint, req, handler, true);
  }

  private sendTo(cluster: Cluster, endpoint: Endpoint, req: DispatchRequest, handler: DispatchHandler, mayRetry: boolean): void {
    const h2 = req.wantsH2 || cluster.config.protocol === 'http2';
    let h = handler;
    // Without mTLS (--mtls off), a peer sidecar that enforces STRICT refuses the connection (a peer also running
    // --mtls off accepts it): when that fails, say so instead of reporting a bare reset.
    if (this.connector === undefined && cluster.config.mtlsMode === 'STRICT' && endpoint.config.inboundPort !== undefined) h = withMtlsHint(h, req.cluster);
    // gRPC goes over HTTP/2 whatever the port's declared protocol (a gRPC server on a port named `http` works).
    if (req.wantsH2 && cluster.config.protocol === 'http1') h = withHint(h, req.cluster, protocolHint);
    // A connection that could not be made carried nothing: the request goes once more, to another endpoint (as
    // Envoy's connect-failure retry). A body is read only once the connection is up (HTTP/1.1: connected; HTTP/2:
    // the peer's SETTINGS are in, see h2-settings.ts), so gRPC calls are retried too.
    if (mayRetry && cluster.config.endpoints.length > 1) h = new ConnectRetry(this, cluster, endpoint, req, h);
    endpoint.pool.request(req, h, h2);
  }

  /** ConnectRetry's way back in: sends the request to an endpoint other than `failed`; false when there is none. */
  retryElsewhere(cluster: Cluster, failed: Endpoint, req: DispatchRequest, handler: DispatchHandler): boolean {
    if (this.clusters.get(req.cluster) !== cluster) return false;
    // The balancer's choice unless that is the endpoint that failed (as Envoy's previous_hosts retry predicate) or
    // one ejected after failures: then the least loaded other one, rather than drawing again (with three endpoints,
    // three draws all returned the failed one 30% of the time).
    let other = this.pick(cluster, req.hash);
    if (other === failed || other?.load.ejected) other = cluster.another(failed);
    if (other === undefined) return false;
    this.metrics.connectRetries.inc();
    this.sendTo(cluster, other, req, handler, false);
    return true;
  }

  stats(): ClusterStat[] {
    return [...this.clusters.values()].map((c) => c.stat());
  }

  async close(drainMs: number): Promise<void> {
    const all = [...this.clusters.values(), ...this.retiring];
    this.clusters.clear();
    await Promise.all(all.map((c) => c.close(drainMs)));
  }
}

/** The handler, with the local replies for a failed connection or reset explaining the likely mTLS mismatch. */
function withMtlsHint(handler: DispatchHandler, cluster: string): DispatchHandler {
  return withHint(handler, cluster, mtlsHint);
}

/** The handler, with the local replies for a failed connection or reset given `hint`'s explanation. */
function withHint(handler: DispatchHandler, cluster: string, hint: (e: LocalReplyError, cluster: string) => LocalReplyError): DispatchHandler {
  return {
    onRequestStart: (c) => handler.onRequestStart(c),
    onResponseStart: (s, h) => handler.onResponseStart(s, h),
    onResponseData: (chunk) => handler.onResponseData(chunk),
    onResponseEnd: (t) => handler.onResponseEnd(t),
    onResponseError: (e) => handler.onResponseError(e.reason === 'upstream_reset' || e.reason === 'upstream_connect_error' ? hint(e, cluster) : e),
  };
}

/**
 * Passes everything through; a failed connection (nothing was sent) sends the request once more elsewhere. So does a
 * peer sidecar's `503 upstream_connect_error`: nothing listened on its app port, so the app never saw the request
 * (Istio gets the same from its default retry of 503s on the client side), and its gRPC form, a trailers-only
 * UNAVAILABLE. A request with a body is sent again when the whole body was kept (req.replay, see replay-body.ts).
 */
class ConnectRetry implements DispatchHandler {
  private readonly manager: ClusterManager;
  private readonly cluster: Cluster;
  private readonly failed: Endpoint;
  private readonly req: DispatchRequest;
  private readonly handler: DispatchHandler;
  /** The peer's 503, held back while it may still be replaced by another endpoint's answer. */
  private held: { status: number; headers: Headers; body: Buffer[] } | undefined;

  constructor(manager: ClusterManager, cluster: Cluster, failed: Endpoint, req: DispatchRequest, handler: DispatchHandler) {
    this.manager = manager;
    this.cluster = cluster;
    this.failed = failed;
    this.req = req;
    this.handler = handler;
  }

  onRequestStart(c: DispatchController): void {
    this.handler.onRequestStart(c);
  }

  onResponseStart(status: number, headers: Headers): void {
    // The peer sidecar answered for an app that refused the connection: 503, or for gRPC a trailers-only 200 with
    // UNAVAILABLE. Such a fast answer must not make the endpoint look like the quickest one, body or not.
    const refused = headers[REASON_HEADER] === 'upstream_connect_error' && this.failed.config.inboundPort !== undefined && (status === 503 || status === 200);
    if (refused) this.failed.load.penalize();
    // gRPC's form of it is a trailers-only 200 with UNAVAILABLE.
    const unavailable = status === 503 || (status === 200 && headers['grpc-status'] === '14');
    if (refused && unavailable && (this.req.body === null || this.req.replay?.replayable === true)) {
      this.held = { status, headers, body: [] };
      return;
    }
    this.handler.onResponseStart(status, headers);
  }

  onResponseData(chunk: Buffer): boolean {
    if (this.held !== undefined) {
      this.held.body.push(Buffer.from(chunk));
      return true;
    }
    return this.handler.onResponseData(chunk);
  }

  onResponseEnd(trailers: Headers | undefined): void {
    const held = this.held;
    if (held === undefined) {
      this.handler.onResponseEnd(trailers);
      return;
    }
    this.held = undefined;
    if (this.req.body === null) {
      if (!this.manager.retryElsewhere(this.cluster, this.failed, this.req, this.handler)) this.deliver(held, trailers);
      return;
    }
    const replay = this.req.replay;
    if (replay === undefined) {
      this.deliver(held, trailers);
      return;
    }
    // The peer may have answered before the client sent all of the body: the retry waits a little for the rest.
    replay.whenComplete((body) => {
      if (body === undefined || !this.manager.retryElsewhere(this.cluster, this.failed, { ...this.req, body, replay: undefined }, this.handler)) this.deliver(held, trailers);
    });
  }

  /** The held answer goes to the client after all. */
  private deliver(held: { status: number; headers: Headers; body: Buffer[] }, trailers: Headers | undefined): void {
    this.handler.onResponseStart(held.status, held.headers);
    for (const chunk of held.body) this.handler.onResponseData(chunk);
    this.handler.onResponseEnd(trailers);
  }

  onResponseError(e: LocalReplyError): void {
    if (e.code === 'SKEIN_UPSTREAM_CONNECT' && this.manager.retryElsewhere(this.cluster, this.failed, this.req, this.handler)) return;
    this.handler.onResponseError(e);
  }
}
