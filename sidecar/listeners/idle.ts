// Closes downstream HTTP/1.1 connections idle too long with one sweep timer per listener (instead of node:http's per-request socket timer).
import type net from 'node:net';

const kLastActive = Symbol('skein.lastActive');
const kInFlight = Symbol('skein.inFlight');

type Tracked = net.Socket & { [kLastActive]?: number; [kInFlight]?: number };

/**
 * node:http's keepAliveTimeout re-arms a timer on the socket after every response (a new Timeout object, a timer
 * list insert) and clears it on the next request; at thousands of requests per second that is measurable. Here a
 * request only stamps its socket, and one unref'd interval closes connections with nothing in flight whose last
 * activity is older than `idleMs`.
 */
export class IdleSweeper {
  private readonly sockets: ReadonlySet<net.Socket>;
  private readonly idleMs: number;
  private readonly timer: NodeJS.Timeout;

  constructor(sockets: ReadonlySet<net.Socket>, idleMs: number, everyMs = Math.min(15_000, Math.max(100, idleMs / 4))) {
    this.sockets = sockets;
    this.idleMs = idleMs;
    this.timer = setInterval(() => this.sweep(performance.now()), everyMs);
    this.timer.unref();
  }

  /** Sockets without a stamp (not HTTP/1.1, or no request yet) are left to other timeouts. */
  sweep(now: number): number {
    let closed = 0;
    for (const s of this.sockets as ReadonlySet<Tracked>) {
      const last = s[kLastActive];
      if (last === undefined || s.destroyed || (s[kInFlight] ?? 0) > 0 || now - last < this.idleMs) continue;
      s.destroy();
      closed++;
    }
    return closed;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** A request arrived on `socket` (every request, also those answered locally). */
export function markActive(socket: net.Socket, now: number): void {
  (socket as Tracked)[kLastActive] = now;
}

/** A proxied exchange holds `socket` until exchangeEnded. */
export function exchangeStarted(socket: net.Socket): void {
  const s = socket as Tracked;
  s[kInFlight] = (s[kInFlight] ?? 0) + 1;
}

export function exchangeEnded(socket: net.Socket, now: number): void {
  const s = socket as Tracked;
  s[kInFlight] = Math.max(0, (s[kInFlight] ?? 1) - 1);
  s[kLastActive] = now;
}
