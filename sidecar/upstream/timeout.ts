// Interceptor: a route timeout (504 `timeout`) from dispatch until the response ends.
import { upstreamTimeout } from '../listeners/errors.ts';
import type { LocalReplyError } from '../listeners/errors.ts';
import type { Dispatch, DispatchController, DispatchHandler, DispatchRequest, Headers, Interceptor } from './dispatch.ts';

class TimeoutHandler implements DispatchHandler {
  private readonly inner: DispatchHandler;
  private controller: DispatchController | undefined;
  private readonly timer: NodeJS.Timeout;
  private done = false;

  constructor(inner: DispatchHandler, request: DispatchRequest) {
    this.inner = inner;
    this.timer = setTimeout(this.fire, request.timeoutMs, this, request);
  }

  private fire(self: TimeoutHandler, request: DispatchRequest): void {
    // After the turn's I/O (setImmediate runs after the poll phase): timers run before I/O, so once the process was held
    // past the timeout (a GC pause, a starved CPU), the end of a response that came meanwhile is read before the 504.
    setImmediate(() => {
      if (self.done) return;
      self.done = true;
      self.controller?.abort();
      self.inner.onResponseError(upstreamTimeout('the response', request.timeoutMs, request.cluster));
    });
  }

  onRequestStart(controller: DispatchController): void {
    this.controller = controller;
    this.inner.onRequestStart(controller);
  }
  onResponseStart(status: number, headers: Headers): void {
    if (!this.done) this.inner.onResponseStart(status, headers);
  }
  onResponseData(chunk: Buffer): boolean {
    return this.done ? true : this.inner.onResponseData(chunk);
  }
  onResponseEnd(trailers: Headers | undefined): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.inner.onResponseEnd(trailers);
  }
  onResponseError(error: LocalReplyError): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.inner.onResponseError(error);
  }
}

/** Requests with timeoutMs > 0 get a timer; others pass through without any allocation. */
export const timeoutInterceptor: Interceptor = (next: Dispatch): Dispatch => {
  return (request, handler) => {
    if (request.timeoutMs > 0) next(request, new TimeoutHandler(handler, request));
    else next(request, handler);
  };
};
