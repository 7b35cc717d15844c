// One request as HTTP/1.1 on the endpoint's undici Pool (keep-alive, no pipelining): undici's handler API mapped onto ours.
import type { Dispatcher } from 'undici';
import { badRequest, upstreamReset } from '../listeners/errors.ts';
import type { LocalReplyError } from '../listeners/errors.ts';
import { logger } from '../log.ts';
import type { DispatchController, DispatchHandler, DispatchRequest, Headers } from './dispatch.ts';
import { stripHopByHop } from './dispatch.ts';
import type { EndpointPool } from './pool.ts';
import { upstreamError } from './pool.ts';

const log = logger('upstream');

type UndiciController = Dispatcher.DispatchController;

/** Error codes that mean the kept-alive connection was gone when the request went out (safe to send once more). */
const STALE_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/** Sends `req` on the pool's HTTP/1.1 connections; the pool's active count is already raised. */
export function sendH1(pool: EndpointPool, dispatcher: Dispatcher, req: DispatchRequest, handler: DispatchHandler): void {
  const ex = new H1Exchange(pool, dispatcher, req, handler);
  handler.onRequestStart(ex);
  ex.send();
}

/**
 * Both undici's handler for one attempt and the controller handed to our handler. undici calls onRequestStart when
 * the request is written to a connection (possibly after a connect), so an abort before that is remembered and
 * applied then.
 */
class H1Exchange implements DispatchController, Dispatcher.DispatchHandler {
  readonly pool: EndpointPool;
  private readonly dispatcher: Dispatcher;
  private readonly req: DispatchRequest;
  /** The request's header list with Host added (undici writes it first). */
  private readonly headers: string[];
  private readonly handler: DispatchHandler;
  private readonly startedAt: number;
  private controller: UndiciController | undefined;
  /** The current attempt went out on a connection that already carried a request. */
  private onReused = false;
  private responded = false;
  private finished = false;
  private mayRetry: boolean;

  constructor(pool: EndpointPool, dispatcher: Dispatcher, req: DispatchRequest, handler: DispatchHandler) {
    this.pool = pool;
    this.dispatcher = dispatcher;
    this.req = req;
    this.headers = req.headers;
    this.headers.push('host', req.authority);
    this.handler = handler;
    this.mayRetry = req.body === null;
    this.startedAt = pool.load.start();
  }

  send(): void {
    if (this.finished) return;
    const r = this.req;
    this.controller = undefined;
    this.onReused = false;
    // servername: undici would otherwise derive it from Host per request (an IPv6 regex test); plain HTTP never uses it.
    const opts: Dispatcher.DispatchOptions & { servername: string } = { method: r.method, path: r.path, headers: this.headers, body: r.body, servername: 'skein' };
    this.dispatcher.dispatch(opts, this);
  }

  // --- undici's side ---

  onRequestStart(controller: UndiciController): void {
    this.controller = controller;
    if (this.finished) {
      controller.abort(new Error('request abandoned before it was sent'));
      return;
    }
    this.onReused = this.pool.takeFreshConnection() === false;
    if (this.onReused) this.pool.reused();
  }

  onResponseStart(_c: UndiciController, status: number, headers: Record<string, string | string[]>): void {
    if (this.finished) return;
    this.responded = true;
    this.handler.onResponseStart(status, stripHopByHop(headers as Headers));
  }

  onResponseData(c: UndiciController, chunk: Buffer): void {
    if (this.finished) return;
    if (!this.handler.onResponseData(chunk)) c.pause();
  }

  onResponseEnd(c: UndiciController, trailers: Record<string, string | string[]>): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.load.finish(this.startedAt);
    this.pool.release();
    const raw = c.rawTrailers;
    this.handler.onResponseEnd(Array.isArray(raw) && raw.length > 0 ? (trailers as Headers) : undefined);
  }

  onResponseError(_c: UndiciController | null, err: Error): void {
    if (this.finished) return;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    // A kept-alive connection the server closed as we reused it: send once more on a fresh one (no body sent).
    if (!this.responded && this.mayRetry && this.onReused && STALE_CODES.has(code)) {
      log.debug('retrying after a stale keep-alive connection failed', { target: this.pool.dialTarget, code });
      this.mayRetry = false;
      this.send();
      return;
    }
    this.finished = true;
    this.pool.load.finish(this.startedAt);
    this.pool.release();
    this.handler.onResponseError(this.classify(err, code));
  }

  private classify(err: Error, code: string): LocalReplyError {
    const target = this.pool.dialTarget;
    if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
      return badRequest(`the request cannot be forwarded to ${target}: ${err.message}`);
    }
    // undici reports a connection closed under a request as a SocketError ('other side closed').
    if (code === 'UND_ERR_SOCKET') return upstreamReset('ECONNRESET', target, err);
    if (this.responded) return upstreamReset(code === '' ? 'ECONNRESET' : code, target, err);
    return upstreamError(err, target);
  }

  // --- our handler's side ---

  pause(): void {
    this.controller?.pause();
  }
  resume(): void {
    this.controller?.resume();
  }
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.load.finish(this.startedAt);
    this.pool.release();
    this.controller?.abort(new Error('request abandoned'));
  }
}
