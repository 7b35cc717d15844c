// Per-endpoint live load: requests in flight and peak-EWMA latency (Finagle/Linkerd), read by the P2C picker.

/** Linkerd's defaults: an unmeasured endpoint is assumed to answer in 30 ms; history decays over 10 s. */
export const DEFAULT_RTT_MS = 30;
export const DEFAULT_DECAY_MS = 10_000;
/**
 * Failure accrual (Linkerd's, Envoy's outlier ejection in small): a failed request takes the endpoint out of P2C's
 * choice for EJECT_BASE_MS, doubling with each further failure of a request sent after that (a probe once the time
 * is up), to at most EJECT_MAX_MS; a request sent after the ejection began that succeeds ends the streak. Failures of
 * requests already in flight when it began (a burst cut by one crash) do not lengthen it. A fixed 1 s cost that faded
 * instead let a dead endpoint beat busy healthy ones (100 ms × 16 in flight) and kept a recovered one in a fast
 * cluster out for 11 s.
 */
export const EJECT_BASE_MS = 250;
export const EJECT_MAX_MS = 10_000;

export type Clock = () => number;

/** The default clock, one bound function for every EndpointLoad (a sidecar holds thousands of endpoints). */
const performanceNow: Clock = performance.now.bind(performance);

export class EndpointLoad {
  /** Requests sent and not yet finished. */
  active = 0;
  /** Requests (and TCP streams) finished, and those of them that failed here (connect error, reset, timeout). */
  total = 0;
  failed = 0;
  private ewmaMs: number;
  private stamp: number;
  /**
   * When the endpoint first answered (NaN until then). Requests sent before it are its warm-up: they pay for the
   * endpoint's own cold start (its process compiling, its sidecar's first connections to what it calls), so their
   * latency may lower its estimate but not raise it. Otherwise the replica whose cold start happened to be slowest
   * looks slowest and P2C starves it for tens of seconds (seen in the demo: one of three app replicas got 1 request
   * in 10 s). A slow endpoint is known by the first request sent after it answered.
   */
  private warmAt = Number.NaN;
  /** Failure accrual (see EJECT_BASE_MS): out of P2C's choice until `ejectedUntil`, since `ejectedAt`. */
  private strikes = 0;
  private ejectedAt = Number.NEGATIVE_INFINITY;
  private ejectedUntil = Number.NEGATIVE_INFINITY;
  private readonly decayMs: number;
  private readonly now: Clock;

  constructor(now: Clock = performanceNow, defaultRttMs = DEFAULT_RTT_MS, decayMs = DEFAULT_DECAY_MS) {
    this.now = now;
    this.ewmaMs = defaultRttMs;
    this.decayMs = decayMs;
    this.stamp = now();
  }

  /** Call when a request is sent; returns the start time to hand back to `finish`. */
  start(): number {
    this.active++;
    return this.now();
  }

  /**
   * The clock reading a request's latency sample starts from once its connection is usable: a request that had to
   * wait for a new connection (TCP and TLS handshakes) restarts its sample here, so one cold start does not mark an
   * endpoint slow for the decay period (Linkerd picks only among endpoints whose connection is ready).
   */
  sent(): number {
    return this.now();
  }

  /** Call once per `start`, when the response ends (or, `failed`, when no full response came). */
  finish(startedAt: number, failed = false): void {
    if (this.active > 0) this.active--;
    this.total++;
    const t = this.now();
    if (failed) {
      // A refused or reset request comes back fast: as a latency it would make a broken endpoint look like the
      // best one. It ejects the endpoint for a while instead.
      this.penalize(startedAt);
      return;
    }
    if (this.strikes !== 0 && startedAt >= this.ejectedAt) this.strikes = 0;
    const rtt = t - startedAt;
    if (!(startedAt >= this.warmAt)) {
      // Sent during the warm-up (see warmAt); NaN compares false, so the first answer lands here too.
      if (Number.isNaN(this.warmAt)) this.warmAt = t;
      if (rtt > this.ewmaMs) return;
    }
    this.observeAt(rtt, t);
  }

  /** Call once per `start` for a request the endpoint never saw (refused here, e.g. a head that cannot be forwarded). */
  cancel(): void {
    if (this.active > 0) this.active--;
  }

  /**
   * Call once per `start` for a stream (an opaque TCP connection, an upgraded tunnel) when it ends: its duration is
   * how long the client kept it, not how fast the endpoint answers, so it is no latency sample (one 60 s WebSocket
   * would otherwise make the endpoint look 60 s slow to the cluster's HTTP requests). A failure still counts, as one
   * of a stream opened at `startedAt` (start()'s reading): one open before an ejection lengthens nothing.
   */
  endStream(failed = false, startedAt?: number): void {
    if (this.active > 0) this.active--;
    this.total++;
    if (failed) this.penalize(startedAt);
  }

  /**
   * Counts a failure here and ejects the endpoint (see EJECT_BASE_MS); called by finish() and for a request that
   * failed past the load's own accounting (a peer sidecar's 503 for an app that refused the connection). A failure
   * while ejected changes nothing; one of a request sent before the last ejection began (`startedAt`, when known)
   * ejects again for the same time without counting a strike: only probes lengthen it.
   */
  penalize(startedAt?: number): void {
    this.failed++;
    const now = this.now();
    if (now < this.ejectedUntil) return;
    if (this.strikes === 0 || startedAt === undefined || startedAt >= this.ejectedAt) this.strikes++;
    this.ejectedAt = now;
    this.ejectedUntil = now + Math.min(EJECT_BASE_MS * 2 ** Math.min(this.strikes - 1, 30), EJECT_MAX_MS);
  }

  /** Whether failures keep the endpoint out of P2C's choice now (see EJECT_BASE_MS). */
  get ejected(): boolean {
    return this.ejectedUntil !== Number.NEGATIVE_INFINITY && this.now() < this.ejectedUntil;
  }

  /** Ms until the endpoint is back in P2C's choice after failures (0 when it is in). */
  get ejectedForMs(): number {
    return Math.max(0, this.ejectedUntil - this.now());
  }

  /**
   * A new endpoint's starting estimate: its peers' typical latency rather than the 30 ms default, so an endpoint
   * added to a cluster whose others answer in 5 ms gets its share at once instead of after many seconds (it is never
   * picked to be measured while it looks slower). Only before its first sample.
   */
  seed(latencyMs: number): void {
    if (this.total !== 0 || this.active !== 0 || !(latencyMs > 0)) return;
    this.ewmaMs = latencyMs;
    this.stamp = this.now();
  }

  /** Forgets failures: the endpoint was taken out of rotation (not ready) and is back. */
  forgive(): void {
    this.strikes = 0;
    this.ejectedUntil = Number.NEGATIVE_INFINITY;
  }

  /** Peak EWMA: a slower sample replaces the average at once; faster ones pull it down with time-based decay. */
  observe(rttMs: number): void {
    this.observeAt(rttMs, this.now());
  }

  private observeAt(rttMs: number, t: number): void {
    if (rttMs > this.ewmaMs) {
      this.ewmaMs = rttMs;
    } else {
      const w = Math.exp(-Math.max(0, t - this.stamp) / this.decayMs);
      this.ewmaMs = this.ewmaMs * w + rttMs * (1 - w);
    }
    this.stamp = t;
  }

  /** The latency estimate in ms (failures are no latency: see ejectedForMs). */
  get latencyMs(): number {
    return this.ewmaMs;
  }

  /**
   * Linkerd's cost: latency × (in flight + 1) (ejection is apart: see `ejected`), where the latency decays toward zero while the endpoint is idle
   * (Finagle reads it through observe(0)), so one slow first answer cannot starve an endpoint for good.
   */
  cost(): number {
    const now = this.now();
    const idle = now - this.stamp;
    const latency = idle > 0 && this.active === 0 ? this.ewmaMs * Math.exp(-idle / this.decayMs) : this.ewmaMs;
    return latency * (this.active + 1);
  }
}
