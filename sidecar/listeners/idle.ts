// Downstream HTTP/1.1 connection bookkeeping: the exchanges each holds (abandoned when it closes) and one idle sweep per listener.
import type net from 'node:net';

const kLastActive = Symbol('skein.lastActive');
const kHeld = Symbol('skein.exchanges');

/** A proxied exchange on a downstream connection; told when the connection closes before it finished. */
export interface HeldExchange {
  closed(): void;
}

type Tracked = net.Socket & { [kLastActive]?: number; [kHeld]?: HeldExchange[] };

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
    // After the turn's I/O (setImmediate), as the header sweep: a request that came while the process was held past
    // the idle timeout is read (and the connection stamped active) before the connection is judged idle.
    this.timer = setInterval(() => setImmediate(() => this.sweep(performance.now())), everyMs);
    this.timer.unref();
  }

  /** Sockets without a stamp (not HTTP/1.1, or no request yet) are left to other timeouts. */
  sweep(now: number): number {
    let closed = 0;
    for (const s of this.sockets as ReadonlySet<Tracked>) {
      const last = s[kLastActive];
      if (last === undefined || s.destroyed || (s[kHeld]?.length ?? 0) > 0 || now - last < this.idleMs) continue;
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

/**
 * A proxied exchange holds `socket` until exchangeEnded. One 'close' listener per connection (abandonExchanges)
 * replaces a listener per response.
 */
export function exchangeStarted(socket: net.Socket, ex: HeldExchange): void {
  const s = socket as Tracked;
  const held = s[kHeld];
  if (held === undefined) s[kHeld] = [ex];
  else held.push(ex);
}

export function exchangeEnded(socket: net.Socket, ex: HeldExchange, now: number): void {
  const s = socket as Tracked;
  const held = s[kHeld];
  if (held !== undefined) {
    const i = held.indexOf(ex);
    if (i >= 0) held.splice(i, 1);
  }
  s[kLastActive] = now;
}

/** The connection closed: every exchange it still holds is told (the client went away). */
export function abandonExchanges(socket: net.Socket): void {
  const s = socket as Tracked;
  const held = s[kHeld];
  if (held === undefined || held.length === 0) return;
  s[kHeld] = [];
  for (const ex of held) ex.closed();
}
