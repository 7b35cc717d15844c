// Per-endpoint live load: requests in flight and peak-EWMA latency (Finagle/Linkerd), read by the P2C picker.

/** Linkerd's defaults: an unmeasured endpoint is assumed to answer in 30 ms; history decays over 10 s. */
export const DEFAULT_RTT_MS = 30;
export const DEFAULT_DECAY_MS = 10_000;
/** The latency a failed request counts as (it then decays over DEFAULT_DECAY_MS like any sample). */
export const FAILURE_PENALTY_MS = 1000;

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
      // best one. It counts as a slow answer instead, decaying like any sample, so the endpoint is tried again.
      this.failed++;
      this.observeAt(Math.max(FAILURE_PENALTY_MS, t - startedAt), t);
      return;
    }
    this.observeAt(t - startedAt, t);
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

  /** The latency estimate in ms. */
  get latencyMs(): number {
    return this.ewmaMs;
  }

  /**
   * Linkerd's cost: latency × (in flight + 1), where the latency decays toward zero while the endpoint is idle
   * (Finagle reads it through observe(0)), so one slow first answer cannot starve an endpoint for good.
   */
  cost(): number {
    const idle = this.now() - this.stamp;
    const latency = idle > 0 && this.active === 0 ? this.ewmaMs * Math.exp(-idle / this.decayMs) : this.ewmaMs;
    return latency * (this.active + 1);
  }
}
