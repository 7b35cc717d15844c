// Data-plane Prometheus metrics in the registry we are given; per-request counts are plain numbers handed to prom-client at scrape time.
import { Counter, Gauge, Histogram, type Registry } from './prom.ts';
import type { LocalReason } from '../listeners/errors.ts';
import { HistogramSeries } from './histogram-series.ts';
import { TcpMetrics } from './tcp-metrics.ts';

export type Direction = 'inbound' | 'outbound';

type CounterChild = ReturnType<Counter<string>['labels']>;
type GaugeChild = ReturnType<Gauge<string>['labels']>;

/** Requests finished with one status code: counted here, added to the prom-client child when scraped. */
interface CodeCount {
  n: number;
  reported: number;
  child: CounterChild | undefined;
}

/** Buckets of skein_request_duration_seconds. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Request metrics for one (direction, cluster). prom-client children hash their label values on every call, so the
 * request path only bumps plain numbers (counts per status code, duration buckets) that are flushed into
 * skein_requests_total and skein_request_duration_seconds when those are collected (scraped).
 *
 * A sidecar holds every cluster of the mesh but sends to few: everything per series (duration buckets, the
 * connections gauge child) is made on first use, so an idle cluster costs this object and nothing else.
 */
export class ClusterRequestMetrics {
  private readonly owner: DataPlaneMetrics;
  private readonly direction: Direction;
  private readonly cluster: string;
  /** Made on the first request. */
  private byCode: Map<number, CodeCount> | undefined;
  private duration: HistogramSeries | undefined;
  private connectionsChild: GaugeChild | undefined;
  /** skein_upstream_requests_reused_total (one series for the sidecar). */
  readonly reused: { inc(): void };

  constructor(owner: DataPlaneMetrics, direction: Direction, cluster: string) {
    this.owner = owner;
    this.direction = direction;
    this.cluster = cluster;
    this.reused = owner.reusedCount;
  }

  /** skein_upstream_connections{cluster}, made on the first connection. */
  get connections(): GaugeChild {
    this.connectionsChild ??= this.owner.connections.labels(this.cluster);
    return this.connectionsChild;
  }

  /** One finished request: its status code and its duration in seconds. */
  observe(code: number, seconds: number): void {
    const byCode = (this.byCode ??= new Map());
    const c = byCode.get(code);
    if (c === undefined) byCode.set(code, { n: 1, reported: 0, child: undefined });
    else c.n++;
    (this.duration ??= new HistogramSeries({ direction: this.direction, cluster: this.cluster }, DURATION_BUCKETS)).observe(seconds);
  }

  /** Copies the duration histogram into skein_request_duration_seconds. */
  flushDuration(): void {
    this.duration?.flush(this.owner.duration);
  }

  /** Adds the requests counted since the last scrape to skein_requests_total. */
  flush(): void {
    if (this.byCode === undefined) return;
    for (const [code, c] of this.byCode) {
      if (c.n === c.reported) continue;
      c.child ??= this.owner.requests.labels(this.direction, this.cluster, String(code));
      c.child.inc(c.n - c.reported);
      c.reported = c.n;
    }
  }
}

/** A plain counter flushed into a prom-client Counter without labels when scraped. */
class PendingCount {
  n = 0;
  reported = 0;
  inc(): void {
    this.n++;
  }
  flush(into: Counter<string>): void {
    if (this.n === this.reported) return;
    into.inc(this.n - this.reported);
    this.reported = this.n;
  }
}

export class DataPlaneMetrics {
  readonly requests: Counter<'direction' | 'cluster' | 'code'>;
  readonly duration: Histogram<'direction' | 'cluster'>;
  readonly connections: Gauge<'cluster'>;
  readonly localErrors: Counter<'reason'>;
  readonly listenerBindFailures: Gauge<'listener'>;
  /** skein_tls_handshakes_total{direction, result}: result ok | resumed | failed | identity_mismatch. */
  readonly tlsHandshakes: Counter<'direction' | 'result'>;
  /** Requests sent on a connection (or HTTP/2 session) that already carried one: no connect, no handshake. */
  readonly requestsReused: Counter<string>;
  readonly inboundRefused: Counter<'reason'>;
  readonly authzDenied: Counter<'service'>;
  /** Accepted inbound connections by transport (mtls | plaintext) and the peer's SPIFFE ID ('' when none). */
  readonly inboundConnections: Counter<'transport' | 'peer'>;
  /** Requests sent again to another endpoint after their connection could not be made. */
  readonly connectRetries: Counter<string>;
  /** Connections proxied as byte streams, per direction and cluster (skein_tcp_*). */
  readonly tcp: TcpMetrics;
  /** Requests sent on a reused connection, counted per request and flushed into requestsReused when scraped. */
  readonly reusedCount = new PendingCount();
  /** Per direction, by cluster name (no `direction|cluster` key string per cluster). */
  private readonly clusters: Record<Direction, Map<string, ClusterRequestMetrics>> = { inbound: new Map(), outbound: new Map() };
  private readonly reasons = new Map<LocalReason, CounterChild>();

  constructor(registry: Registry) {
    const registers = [registry];
    const { inbound, outbound } = this.clusters;
    const directions = [outbound, inbound];
    const reused = this.reusedCount;
    this.requests = new Counter({
      name: 'skein_requests_total',
      help: 'HTTP requests handled by the sidecar, by direction, cluster and response status code.',
      labelNames: ['direction', 'cluster', 'code'],
      registers,
      collect() {
        for (const byName of directions) for (const m of byName.values()) m.flush();
      },
    });
    this.duration = new Histogram({
      name: 'skein_request_duration_seconds',
      help: 'Time from request received to response finished, by direction and cluster.',
      labelNames: ['direction', 'cluster'],
      buckets: DURATION_BUCKETS,
      registers,
      collect() {
        for (const byName of directions) for (const m of byName.values()) m.flushDuration();
      },
    });
    this.connections = new Gauge({
      name: 'skein_upstream_connections',
      help: 'Open connections to upstream endpoints, by cluster.',
      labelNames: ['cluster'],
      registers,
    });
    this.localErrors = new Counter({
      name: 'skein_local_errors_total',
      help: 'Requests the sidecar answered itself (no route, no healthy endpoint, upstream failure, bad request), by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.listenerBindFailures = new Gauge({
      name: 'skein_listener_bind_failures',
      help: 'Listeners that could not bind their address (1 while failing), by listener name.',
      labelNames: ['listener'],
      registers,
    });
    this.tlsHandshakes = new Counter({
      name: 'skein_tls_handshakes_total',
      help: 'mTLS handshakes between sidecars, by direction and result (ok, resumed, failed, identity_mismatch).',
      labelNames: ['direction', 'result'],
      registers,
    });
    this.requestsReused = new Counter({
      name: 'skein_upstream_requests_reused_total',
      help: 'Upstream requests sent on an already open connection or HTTP/2 session (no connect, no TLS handshake).',
      registers,
      collect() {
        reused.flush(this);
      },
    });
    this.inboundRefused = new Counter({
      name: 'skein_inbound_refused_total',
      help: 'Inbound connections refused before reaching the app, by reason (plaintext_strict, client_certificate, tls_handshake, bad_port, ...).',
      labelNames: ['reason'],
      registers,
    });
    this.authzDenied = new Counter({
      name: 'skein_authz_denied_total',
      help: 'Inbound requests or connections denied by an authorization policy, by destination Service (<ns>/<name>).',
      labelNames: ['service'],
      registers,
    });
    this.connectRetries = new Counter({
      name: 'skein_upstream_connect_retries_total',
      help: 'Requests sent once more, to another endpoint, after their connection to the first could not be made.',
      registers,
    });
    this.inboundConnections = new Counter({
      name: 'skein_inbound_connections_total',
      help: 'Inbound connections accepted, by transport (mtls, plaintext) and the peer SPIFFE ID the sidecar verified.',
      labelNames: ['transport', 'peer'],
      registers,
    });
    this.tcp = new TcpMetrics(registry);
  }

  cluster(direction: Direction, cluster: string): ClusterRequestMetrics {
    const byName = this.clusters[direction];
    let m = byName.get(cluster);
    if (m === undefined) {
      m = new ClusterRequestMetrics(this, direction, cluster);
      byName.set(cluster, m);
    }
    return m;
  }

  /** The inbound side's per-app-port series: cluster `inbound|<port>||`, as Istio names its inbound clusters. */
  inbound(appPort: number): ClusterRequestMetrics {
    return this.cluster('inbound', `inbound|${appPort}||`);
  }

  localError(reason: LocalReason): void {
    let c = this.reasons.get(reason);
    if (c === undefined) {
      c = this.localErrors.labels(reason);
      this.reasons.set(reason, c);
    }
    c.inc();
  }
}
