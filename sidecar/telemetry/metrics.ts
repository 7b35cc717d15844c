// Data-plane Prometheus metrics in the registry we are given; label children cached so the hot path allocates nothing.
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { LocalReason } from '../listeners/errors.ts';

export type Direction = 'inbound' | 'outbound';

type CounterChild = ReturnType<Counter<string>['labels']>;
type HistogramChild = ReturnType<Histogram<string>['labels']>;
type GaugeChild = ReturnType<Gauge<string>['labels']>;

/** Request metrics for one (direction, cluster): children per status code made once, then reused. */
export class ClusterRequestMetrics {
  private readonly owner: DataPlaneMetrics;
  private readonly direction: Direction;
  private readonly cluster: string;
  private readonly byCode = new Map<number, CounterChild>();
  private readonly duration: HistogramChild;
  /** skein_upstream_connections{cluster}. */
  readonly connections: GaugeChild;
  /** skein_upstream_requests_reused_total (one series for the sidecar). */
  readonly reused: Counter<string>;

  constructor(owner: DataPlaneMetrics, direction: Direction, cluster: string) {
    this.owner = owner;
    this.direction = direction;
    this.cluster = cluster;
    this.duration = owner.duration.labels(direction, cluster);
    this.connections = owner.connections.labels(cluster);
    this.reused = owner.requestsReused;
  }

  /** One finished request: its status code and its duration in seconds. */
  observe(code: number, seconds: number): void {
    let c = this.byCode.get(code);
    if (c === undefined) {
      c = this.owner.requests.labels(this.direction, this.cluster, String(code));
      this.byCode.set(code, c);
    }
    c.inc();
    this.duration.observe(seconds);
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
  private readonly clusters = new Map<string, ClusterRequestMetrics>();
  private readonly reasons = new Map<LocalReason, CounterChild>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'skein_requests_total',
      help: 'HTTP requests handled by the sidecar, by direction, cluster and response status code.',
      labelNames: ['direction', 'cluster', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: 'skein_request_duration_seconds',
      help: 'Time from request received to response finished, by direction and cluster.',
      labelNames: ['direction', 'cluster'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
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
    });
    this.inboundRefused = new Counter({
      name: 'skein_inbound_refused_total',
      help: 'Inbound connections refused before reaching the app, by reason (plaintext_strict, tls_handshake, bad_port, ...).',
      labelNames: ['reason'],
      registers,
    });
    this.authzDenied = new Counter({
      name: 'skein_authz_denied_total',
      help: 'Inbound requests or connections denied by an authorization policy, by destination Service (<ns>/<name>).',
      labelNames: ['service'],
      registers,
    });
    this.inboundConnections = new Counter({
      name: 'skein_inbound_connections_total',
      help: 'Inbound connections accepted, by transport (mtls, plaintext) and the peer SPIFFE ID the sidecar verified.',
      labelNames: ['transport', 'peer'],
      registers,
    });
  }

  cluster(direction: Direction, cluster: string): ClusterRequestMetrics {
    const key = `${direction}|${cluster}`;
    let m = this.clusters.get(key);
    if (m === undefined) {
      m = new ClusterRequestMetrics(this, direction, cluster);
      this.clusters.set(key, m);
    }
    return m;
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
