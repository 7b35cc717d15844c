// Interceptor: the stream idle timeout (Envoy's stream_idle_timeout, 5 min by default): a response that stops moving ends.
import { streamIdleTimeout } from '../listeners/errors.ts';
import type { LocalReplyError } from '../listeners/errors.ts';
import type { Dispatch, DispatchController, DispatchHandler, DispatchRequest, Headers, Interceptor } from './dispatch.ts';

/** Envoy's default when the listener's HttpConnectionManager sets none. */
export const STREAM_IDLE_TIMEOUT_MS = 300_000;

/**
 * Watches every request in flight with one coarse sweep: a response event or a chunk of the request body stamps the
 * request with the sweep's tick, and a request with neither for the timeout is abandoned: 408 if nothing of the
 * response went out yet, else the downstream is reset (as Envoy does). A peer that stops (SIGSTOP, a hung app, a
 * lost network), or a client that stops sending a body it announced, then costs minutes, not forever: neither holds
 * a pooled upstream connection for good. Per request: one object and a Set entry, no timer.
 */
export class StreamIdleWatch {
  private readonly inFlight = new Set<IdleHandler>();
  private timeoutMs = STREAM_IDLE_TIMEOUT_MS;
  /** Time between sweeps; 0 until the first setTimeout. */
  private sweepMs = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Advances once per sweep; handlers remember the tick of their last event. */
  tick = 0;

  /** `autoSweep` false: no timer, the owner calls sweep() (tests). */
  private readonly autoSweep: boolean;

  constructor(timeoutMs = STREAM_IDLE_TIMEOUT_MS, autoSweep = true) {
    this.autoSweep = autoSweep;
    this.setTimeout(timeoutMs);
  }

  /** 0 turns the timeout off (requests already in flight are no longer watched). */
  setTimeout(ms: number): void {
    if (ms === this.timeoutMs && this.sweepMs > 0) return;
    this.timeoutMs = ms;
    clearInterval(this.timer);
    this.timer = undefined;
    if (ms <= 0) {
      this.sweepMs = 1;
      this.inFlight.clear();
      return;
    }
    // Ten sweeps per timeout (at least every 10 ms, at most every 15 s): a request ends 100–110% of the timeout idle.
    this.sweepMs = Math.max(10, Math.min(15_000, Math.floor(ms / 10)));
    if (!this.autoSweep) return;
    // After the turn's I/O (setImmediate runs after the poll phase): timers run before I/O, so once the process was held
    // past a sweep, response bytes that came meanwhile stamp their request before it is judged idle.
    this.timer = setInterval(() => setImmediate(() => this.sweep()), this.sweepMs);
    this.timer.unref();
  }

  get timeout(): number {
    return this.timeoutMs;
  }

  readonly interceptor: Interceptor = (next: Dispatch): Dispatch => {
    return (request, handler) => {
      if (this.timeoutMs <= 0) {
        next(request, handler);
        return;
      }
      const h = new IdleHandler(this, handler, request);
      this.inFlight.add(h);
      next(request, h);
    };
  };

  release(h: IdleHandler): void {
    this.inFlight.delete(h);
  }

  /** One sweep (every tenth of the timeout, from the timer). */
  sweep(): void {
    this.tick++;
    const limit = Math.ceil(this.timeoutMs / this.sweepMs);
    for (const h of this.inFlight) if (this.tick - h.last >= limit) h.expire(this.timeoutMs);
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.inFlight.clear();
  }
}

class IdleHandler implements DispatchHandler {
  private readonly watch: StreamIdleWatch;
  private readonly inner: DispatchHandler;
  readonly request: DispatchRequest;
  private controller: DispatchController | undefined;
  last: number;
  private done = false;
  /** The request body is still due from the client (its end not yet received). */
  private uploading = false;

  constructor(watch: StreamIdleWatch, inner: DispatchHandler, request: DispatchRequest) {
    this.watch = watch;
    this.inner = inner;
    this.request = request;
    this.last = watch.tick;
    // Body bytes count as activity: every Readable (node:http's, node:http2's, our HTTP/1.1 reader's) takes its
    // chunks through its own push(), so one wrapper sees them without reading the stream itself.
    const body = request.body;
    if (body !== null && !body.readableEnded) {
      // A body that came whole with its head was ended (push(null)) before dispatch: nothing more is due from the
      // client. node's Readable keeps that in its state; there is no public flag for it.
      this.uploading = (body as { _readableState?: { ended?: boolean } })._readableState?.ended !== true;
      const push = body.push;
      body.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
        this.last = watch.tick;
        if (chunk === null) this.uploading = false; // the client sent all of it (read or not)
        return push.call(body, chunk, encoding);
      };
    }
  }

  expire(ms: number): void {
    if (this.done) return;
    this.end();
    this.controller?.abort();
    this.inner.onResponseError(streamIdleTimeout(ms, this.request.cluster, this.uploading && this.request.body?.destroyed !== true));
  }

  private end(): void {
    this.done = true;
    this.watch.release(this);
  }

  onRequestStart(controller: DispatchController): void {
    this.controller = controller;
    this.inner.onRequestStart(controller);
  }
  onResponseStart(status: number, headers: Headers): void {
    if (this.done) return;
    this.last = this.watch.tick;
    this.inner.onResponseStart(status, headers);
  }
  onResponseData(chunk: Buffer): boolean {
    if (this.done) return true;
    this.last = this.watch.tick;
    return this.inner.onResponseData(chunk);
  }
  onResponseEnd(trailers: Headers | undefined): void {
    if (this.done) return;
    this.end();
    this.inner.onResponseEnd(trailers);
  }
  onResponseError(error: LocalReplyError): void {
    if (this.done) return;
    this.end();
    this.inner.onResponseError(error);
  }
}
