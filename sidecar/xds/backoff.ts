// Reconnect delays for the ADS stream: exponential backoff with full jitter, reset after a long-lived stream.

export interface BackoffOptions {
  /** First ceiling in ms (default 250). */
  readonly baseMs: number;
  /** Largest ceiling in ms (default 15 000). */
  readonly capMs: number;
  /** A stream that lasted longer than this (ms) resets the attempt count (default 30 000). */
  readonly resetAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, capMs: 15_000, resetAfterMs: 30_000 };

export class Backoff {
  private attempt = 0;
  private readonly options: BackoffOptions;
  private readonly random: () => number;

  constructor(options: Partial<BackoffOptions> = {}, random: () => number = Math.random) {
    this.options = { ...DEFAULT_BACKOFF, ...options };
    this.random = random;
  }

  /** The delay before the next attempt: uniform in [0, min(cap, base × 2^attempt)) ("full jitter"). */
  next(): number {
    const ceiling = Math.min(this.options.capMs, this.options.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.floor(this.random() * ceiling);
  }

  /** Tells the backoff how long the last stream lived; a long one starts the sequence over. */
  streamEnded(livedMs: number): void {
    if (livedMs > this.options.resetAfterMs) this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
