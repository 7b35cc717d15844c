// HTTP/1.1 to one endpoint over our own keep-alive sockets: idle connections, one request per connection at a time.
import type net from 'node:net';
import type { Readable } from 'node:stream';
import { bodyFraming, chunkHeader, CRLF, InvalidRequestHeadError, LAST_CHUNK, requestHead } from '../http1/request-head.ts';
import type { ResponseHeaders } from '../http1/response-reader.ts';
import { badRequest, upstreamOverflow, upstreamProtocolError, upstreamReset } from '../listeners/errors.ts';
import type { LocalReplyError } from '../listeners/errors.ts';
import { logger } from '../log.ts';
import type { DispatchController, DispatchHandler, DispatchRequest } from './dispatch.ts';
import { CLOSED_CODE, H1Connection } from './h1-connection.ts';
import type { ConnectionOwner, ConnectionUser } from './h1-connection.ts';
import type { EndpointPool } from './pool.ts';
import { upstreamError } from './pool.ts';

const log = logger('upstream');

/** Error codes that mean the kept-alive connection was gone when the request went out (safe to send once more). */
const STALE_CODES = new Set(['ECONNRESET', 'EPIPE', CLOSED_CODE]);
/** Methods RFC 9110 (9.2.2) calls idempotent: sent again when a kept-alive connection closes under them. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * Whether a request may go again on a fresh connection after its reused one closed before any response byte. Such a
 * close is usually the server's idle timeout racing our reuse (the request never reached the app), but it can also be
 * a peer dying with the request in hand: then only a request RFC 9110 calls idempotent, or one with an
 * `Idempotency-Key` (or `X-Idempotency-Key`, which Go's HTTP client also honours), may run twice. A request with a
 * body is never sent again (its body is gone).
 */
function replayable(req: DispatchRequest): boolean {
  if (req.body !== null) return false;
  if (IDEMPOTENT.has(req.method)) return true;
  const h = req.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = (h[i] as string).toLowerCase();
    if (name === 'idempotency-key' || name === 'x-idempotency-key') return true;
  }
  return false;
}

/** Idle connections close after this long, or a second before the server's Keep-Alive `timeout=` hint. */
export const IDLE_TIMEOUT_MS = 60_000;

/**
 * Envoy's default circuit breakers, per endpoint here: at most this many connections, and this many requests waiting
 * for one of them; past both, a request is answered 503 `upstream_overflow` at once. Without a cap, 10 000
 * concurrent HTTP/2 streams from one client became 10 000 mTLS connections to one peer, and the sidecar served
 * nobody well for 20 s.
 */
export const MAX_CONNECTIONS = 1024;
export const MAX_PENDING = 1024;

/** The idle HTTP/1.1 connections of one endpoint (most recently used first), their idle timer, and the queue. */
export class H1Pool implements ConnectionOwner {
  private readonly pool: EndpointPool;
  private readonly idle: H1Connection[] = [];
  private readonly idleTimeoutMs: number;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  /** Connections made and not closed yet (busy or idle). */
  private open = 0;
  /** Requests waiting for a connection (FIFO), when MAX_CONNECTIONS are open and busy. */
  private readonly pending: Array<{ req: DispatchRequest; handler: DispatchHandler }> = [];
  private readonly maxConnections: number;
  private readonly maxPending: number;
  private draining = false;

  constructor(pool: EndpointPool, idleTimeoutMs = IDLE_TIMEOUT_MS, maxConnections = MAX_CONNECTIONS, maxPending = MAX_PENDING) {
    this.pool = pool;
    this.idleTimeoutMs = idleTimeoutMs;
    this.maxConnections = maxConnections;
    this.maxPending = maxPending;
  }

  /** Sends `req`; the endpoint pool's active count is already raised. */
  send(req: DispatchRequest, handler: DispatchHandler): void {
    if (this.idle.length === 0 && this.open >= this.maxConnections) {
      if (this.pending.length >= this.maxPending) {
        // Refused here: no failure of the endpoint's (Envoy's overflows do not count toward outlier detection).
        this.pool.release();
        handler.onResponseError(upstreamOverflow(this.pool.dialTarget, this.open, this.pending.length));
        return;
      }
      this.pending.push({ req, handler });
      return;
    }
    const ex = new H1Exchange(this.pool, this, req, handler);
    handler.onRequestStart(ex);
    ex.send();
  }

  /** An idle connection (unless `fresh`), else a new one (its request is written once it is up). */
  acquire(fresh: boolean): H1Connection {
    const idle = this.idle;
    while (!fresh && idle.length > 0) {
      const c = idle.pop() as H1Connection;
      if (!c.closed) return c;
    }
    this.open++;
    return new H1Connection(this, (onread) => this.pool.connect(false, onread), this.idleTimeoutMs);
  }

  park(c: H1Connection): boolean {
    if (this.pool.isDraining || c.idleMs <= 0) return false;
    // Date.now(): millisecond precision is plenty here, and it is far cheaper than performance.now().
    const now = Date.now();
    c.idleSince = now;
    this.idle.push(c);
    const due = now + c.idleMs;
    if (this.timer === undefined || due < this.timerDue) this.arm(due, now);
    if (this.pending.length > 0) this.scheduleDrain();
    return true;
  }

  forget(c: H1Connection): void {
    const i = this.idle.lastIndexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    if (c.counted) {
      c.counted = false;
      this.open--;
      if (this.pending.length > 0) this.scheduleDrain();
    }
  }

  /** Sends waiting requests, on the next tick (never from inside a connection's parser callback). */
  private scheduleDrain(): void {
    if (this.draining) return;
    this.draining = true;
    process.nextTick(drainPending, this);
  }

  drainPending(): void {
    this.draining = false;
    while (this.pending.length > 0 && (this.idle.length > 0 || this.open < this.maxConnections)) {
      const next = this.pending.shift() as { req: DispatchRequest; handler: DispatchHandler };
      this.send(next.req, next.handler);
    }
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Closes every idle connection (a drain: busy ones close when their response ends). */
  closeIdle(): void {
    for (const c of this.idle.splice(0)) c.destroy();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(due: number, now: number): void {
    clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(sweep, Math.max(0, due - now) + 1, this);
    this.timer.unref();
  }

  /** Closes connections idle past their time and re-arms for the next one. */
  sweep(): void {
    this.timer = undefined;
    const now = Date.now();
    let next = Infinity;
    const keep: H1Connection[] = [];
    for (const c of this.idle) {
      const due = c.idleSince + c.idleMs;
      if (due <= now) c.destroy();
      else {
        keep.push(c);
        if (due < next) next = due;
      }
    }
    this.idle.length = 0;
    this.idle.push(...keep);
    if (next !== Infinity) this.arm(next, now);
  }
}

function sweep(p: H1Pool): void {
  p.sweep();
}
function drainPending(p: H1Pool): void {
  p.drainPending();
}

const kEx = Symbol('skein.h1exchange');
type WithEx = { [kEx]: H1Exchange };

/** One request: the controller handed to our handler, and the user of whichever connection carries it. */
class H1Exchange implements DispatchController, ConnectionUser {
  private readonly pool: EndpointPool;
  private readonly h1: H1Pool;
  private readonly req: DispatchRequest;
  private readonly handler: DispatchHandler;
  private startedAt: number;
  private readonly noBody: boolean;
  private head = '';
  private chunked = false;
  private conn: H1Connection | undefined;
  /** The socket the body is being written to. */
  private socket: net.Socket | undefined;
  private responded = false;
  private finished = false;
  private mayRetry: boolean;
  requestSent = false;

  constructor(pool: EndpointPool, h1: H1Pool, req: DispatchRequest, handler: DispatchHandler) {
    this.pool = pool;
    this.h1 = h1;
    this.req = req;
    this.handler = handler;
    this.noBody = req.method === 'HEAD';
    this.mayRetry = replayable(req);
    this.startedAt = pool.load.start();
  }

  /** Sends the request; `fresh`: on a new connection (the retry after a stale one). */
  send(fresh = false): void {
    if (this.finished) return;
    const r = this.req;
    if (this.head === '') {
      try {
        const framing = bodyFraming(r.body !== null, r.headers);
        this.chunked = framing === 'chunked';
        this.head = requestHead(r.method, r.path, r.authority, r.headers, framing);
      } catch (err) {
        if (!(err instanceof InvalidRequestHeadError)) throw err;
        this.finish(true, true);
        this.handler.onResponseError(badRequest(`the request cannot be forwarded to ${this.pool.dialTarget}: ${err.message}`));
        return;
      }
    }
    let conn: H1Connection;
    try {
      conn = this.h1.acquire(fresh);
    } catch (err) {
      this.finish(true);
      this.handler.onResponseError(upstreamError(err, this.pool.dialTarget));
      return;
    }
    this.conn = conn;
    if (conn.requests > 0) this.pool.reused();
    conn.start(this, this.noBody);
  }

  // --- the connection's side ---

  write(socket: net.Socket): void {
    // The latency sample starts now, on a usable connection (see EndpointLoad.sent).
    this.startedAt = this.pool.load.sent();
    const body = this.req.body;
    if (body === null) {
      socket.write(this.head, 'latin1');
      this.requestSent = true;
      return;
    }
    (this.conn as H1Connection).guardBody();
    // Body bytes already buffered arrive on the next tick: held with the head so both go out in one write.
    socket.cork();
    socket.write(this.head, 'latin1');
    this.socket = socket;
    (body as unknown as WithEx)[kEx] = this;
    body.on('data', onBodyData);
    body.on('end', onBodyEnd);
    body.on('error', onBodyError);
    process.nextTick(uncork, socket);
  }

  bodyData(chunk: Buffer | string): void {
    const s = this.socket;
    if (s === undefined || s.destroyed) return;
    let ok: boolean;
    if (this.chunked) {
      const n = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      if (n === 0) return;
      s.cork();
      s.write(chunkHeader(n), 'latin1');
      s.write(chunk);
      ok = s.write(CRLF);
      s.uncork();
    } else {
      ok = s.write(chunk);
    }
    if (!ok) {
      const body = this.req.body as Readable;
      body.pause();
      s.once('drain', () => body.resume());
    }
  }

  bodyEnd(): void {
    const s = this.socket;
    this.detachBody(false);
    if (s === undefined || s.destroyed) return;
    if (this.chunked) s.write(LAST_CHUNK);
    this.requestSent = true;
  }

  /** The server stopped reading (an early answer, then a close or reset): the rest of the body is dropped unsent. */
  stopBody(): void {
    this.detachBody(true);
  }

  bodyError(err: NodeJS.ErrnoException): void {
    this.detachBody(false);
    this.conn?.fail(err);
  }

  /** Stops writing the request body; `drop`: let the rest flow away unread (the exchange is over). */
  private detachBody(drop: boolean): void {
    const body = this.req.body;
    if (body === null || this.socket === undefined) return;
    this.socket = undefined;
    body.off('data', onBodyData);
    body.off('end', onBodyEnd);
    body.off('error', onBodyError);
    if (drop && !body.destroyed) body.resume();
  }

  onHead(status: number, headers: ResponseHeaders): void {
    if (this.finished) return;
    this.responded = true;
    this.handler.onResponseStart(status, headers);
  }

  onBody(chunk: Buffer): boolean {
    if (this.finished) return true;
    return this.handler.onResponseData(chunk);
  }

  complete(trailers: ResponseHeaders | undefined): void {
    if (this.finished) return;
    this.conn = undefined;
    this.finish();
    this.handler.onResponseEnd(trailers);
  }

  failed(err: NodeJS.ErrnoException, started: boolean, reused: boolean): void {
    if (this.finished) return;
    this.conn = undefined;
    const code = err.code ?? '';
    // A kept-alive connection the server closed as we reused it: send once more on a fresh one (see replayable).
    if (!started && this.mayRetry && reused && STALE_CODES.has(code)) {
      log.debug('retrying after a stale keep-alive connection failed', { target: this.pool.dialTarget, code });
      this.mayRetry = false;
      this.send(true);
      return;
    }
    this.finish(true);
    this.handler.onResponseError(this.classify(err, code));
  }

  /** `refused`: the request never left (the client's head cannot be forwarded): no sample, no failure of the endpoint's. */
  private finish(failed = false, refused = false): void {
    this.finished = true;
    this.detachBody(true);
    if (refused) this.pool.load.cancel();
    else this.pool.load.finish(this.startedAt, failed);
    this.pool.release();
  }

  private classify(err: Error, code: string): LocalReplyError {
    const target = this.pool.dialTarget;
    if (code === CLOSED_CODE) return upstreamReset('ECONNRESET', target, err);
    if (!this.responded && code.startsWith('HPE_')) return upstreamProtocolError(code, target, err.message, err);
    if (this.responded) return upstreamReset(code === '' ? 'ECONNRESET' : code, target, err);
    return upstreamError(err, target);
  }

  // --- our handler's side ---

  pause(): void {
    this.conn?.pause();
  }
  resume(): void {
    this.conn?.resume();
  }
  abort(): void {
    if (this.finished) return;
    this.finish();
    const c = this.conn;
    this.conn = undefined;
    c?.abandon();
  }
}

function uncork(socket: net.Socket): void {
  socket.uncork();
}
function onBodyData(this: Readable, chunk: Buffer | string): void {
  (this as unknown as WithEx)[kEx].bodyData(chunk);
}
function onBodyEnd(this: Readable): void {
  (this as unknown as WithEx)[kEx].bodyEnd();
}
function onBodyError(this: Readable, err: NodeJS.ErrnoException): void {
  (this as unknown as WithEx)[kEx].bodyError(err);
}
