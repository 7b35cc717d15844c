// The downstream side of one proxied request (HTTP/1.1 on a raw client connection, or an HTTP/2 stream) as a dispatch handler.
import type http2 from 'node:http2';
import type { DownstreamConnection, DownstreamExchange } from '../http1/downstream-connection.ts';
import type { DispatchController, DispatchHandler, Headers } from '../upstream/index.ts';
import type { ClusterRequestMetrics, DataPlaneMetrics } from '../telemetry/metrics.ts';
import type { LocalReason, LocalReplyError } from './errors.ts';
import { exchangeEnded, exchangeStarted } from './idle.ts';
import type { HeldExchange } from './idle.ts';
import { grpcMessage, REASON_HEADER, replyH2 } from './local-reply.ts';
import { respondSafely, sendTrailersSafely } from '../upstream/h2-headers.ts';

const kEx = Symbol('skein.downstream');

/** Shared state every exchange reads: metrics and whether the listener is draining. */
export interface ExchangeScope {
  readonly metrics: DataPlaneMetrics;
  draining: boolean;
}

export class H1Downstream implements DispatchHandler, HeldExchange, DownstreamExchange {
  private readonly scope: ExchangeScope;
  /** The client connection, held (not idle) until the exchange finishes; its close abandons the exchange. */
  private readonly conn: DownstreamConnection;
  private readonly cm: ClusterRequestMetrics;
  private readonly startedAt: number;
  private controller: DispatchController | undefined;
  private status = 0;
  private done = false;

  constructor(scope: ExchangeScope, conn: DownstreamConnection, cm: ClusterRequestMetrics, startedAt: number) {
    this.scope = scope;
    this.conn = conn;
    this.cm = cm;
    this.startedAt = startedAt;
    conn.exchange = this;
    exchangeStarted(conn.socket, this);
  }

  onRequestStart(controller: DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(status: number, headers: Headers): void {
    if (this.done) return;
    this.status = status;
    this.conn.writeHead(status, headers);
  }

  onResponseData(chunk: Buffer): boolean {
    if (this.done) return true;
    return this.conn.writeBody(chunk);
  }

  onResponseEnd(_trailers: Headers | undefined): void {
    if (this.done) return;
    this.finish(this.status);
    this.conn.endResponse();
  }

  onResponseError(error: LocalReplyError): void {
    if (this.done) return;
    this.scope.metrics.localError(error.reason);
    this.fail(error.status, error.reason, error.message);
  }

  /** The request broke midway (a malformed body): abandon the upstream request and answer, or reset. */
  requestFailed(status: number, reason: LocalReason, message: string): void {
    if (this.done) return;
    this.scope.metrics.localError(reason);
    this.controller?.abort();
    this.fail(status, reason, message);
  }

  private fail(status: number, reason: LocalReason, message: string): void {
    if (this.conn.headSent) {
      this.finish(this.status);
      this.conn.destroy();
      return;
    }
    this.finish(status);
    this.conn.reply(status, reason, message);
  }

  private finish(status: number): void {
    this.done = true;
    const now = performance.now();
    this.cm.observe(status, (now - this.startedAt) / 1000);
    exchangeEnded(this.conn.socket, this, now);
  }

  /**
   * The upstream answered 101 and the connection became a tunnel: the exchange counts as done (status 101) but keeps
   * holding the connection, so the idle sweep leaves it alone for as long as the tunnel lives.
   */
  upgraded(): void {
    if (this.done) return;
    this.done = true;
    this.cm.observe(101, (performance.now() - this.startedAt) / 1000);
  }

  /** The socket drained after a write said it was full. */
  drained(): void {
    this.controller?.resume();
  }

  /** The client connection closed before the response ended: abandon the upstream request. */
  closed(): void {
    if (this.done) return;
    this.finish(499);
    this.controller?.abort();
  }
}


export class H2Downstream implements DispatchHandler {
  private readonly scope: ExchangeScope;
  private readonly stream: http2.ServerHttp2Stream;
  private readonly cm: ClusterRequestMetrics;
  private readonly startedAt: number;
  private readonly grpc: boolean;
  private controller: DispatchController | undefined;
  private trailers: Headers | undefined;
  /** The response head, held briefly (see onResponseStart). */
  private head: http2.OutgoingHttpHeaders | undefined;
  /** The head went out waiting for trailers (gRPC, or announced ones); else trailers that come are dropped. */
  private wantsTrailers = false;
  private status = 0;
  private done = false;

  constructor(scope: ExchangeScope, stream: http2.ServerHttp2Stream, cm: ClusterRequestMetrics, startedAt: number, grpc: boolean) {
    this.scope = scope;
    this.stream = stream;
    this.cm = cm;
    this.startedAt = startedAt;
    this.grpc = grpc;
    (stream as unknown as Record<symbol, H2Downstream>)[kEx] = this;
    stream.on('close', onH2Close);
  }

  onRequestStart(controller: DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(status: number, headers: Headers): void {
    this.status = status;
    if (this.stream.destroyed) return;
    const out = headers as http2.OutgoingHttpHeaders;
    out[':status'] = status;
    // A 204 carries no Content-Length (RFC 9110 §8.6): HTTP/2 clients (nghttp2, curl, Node) take one for a protocol
    // error and reset the stream, so an app's is dropped here as on the HTTP/1.1 side.
    if (status === 204 && out['content-length'] !== undefined) delete out['content-length'];
    // The head waits for the first body bytes or the end, at most until the next turn of the event loop. A response
    // that ends with its head must stay one HEADERS frame that ends the stream: gRPC's trailers-only responses (an
    // error status from the app) carry grpc-status there, and a client given headers, then an empty end, loses it.
    this.head = out;
    setImmediate(flushH2Head, this);
  }

  /** Sends the held response head: alone, ending the stream, or ahead of a body (and trailers, when they follow). */
  sendHead(endStream: boolean, trailersFollow = false): void {
    const head = this.head;
    if (head === undefined) return;
    this.head = undefined;
    if (this.stream.destroyed) return;
    if (this.stream.headersSent) {
      // Never expected (node sends a default head only if the body is written first), and must not throw: the
      // response goes on as it started.
      if (endStream && !this.stream.writableEnded) this.stream.end();
      return;
    }
    if (endStream) {
      this.respond(head, END_STREAM);
      return;
    }
    // Trailers are waited for only where they are expected: gRPC, or a response announcing them (`trailer`). Waiting
    // costs a frame of its own for END_STREAM, sent only once node asks for trailers, on the session's next I/O: a
    // client that waits for the end before it writes again (haproxy's h2 backend) stalled ~200 ms per response.
    if (trailersFollow || this.grpc || head['trailer'] !== undefined) {
      if (!this.respond(head, WAIT_FOR_TRAILERS)) return;
      this.wantsTrailers = true;
      this.stream.once('wantTrailers', onWantTrailers);
      return;
    }
    this.respond(head, undefined);
  }

  /** Sends the head (see respondSafely); one node:http2 cannot send at all is answered 502 and the upstream dropped. */
  private respond(head: http2.OutgoingHttpHeaders, options: http2.ServerStreamResponseOptions | undefined): boolean {
    const refused = respondSafely(this.stream, head, options);
    if (refused === undefined) return true;
    this.finish(502);
    this.controller?.abort();
    this.scope.metrics.localError('upstream_protocol_error');
    replyH2(this.stream, 502, 'upstream_protocol_error', `upstream protocol error: the app's response head cannot be sent over HTTP/2: ${refused.message}`, this.grpc);
    return false;
  }

  onResponseData(chunk: Buffer): boolean {
    if (this.stream.destroyed) return true;
    this.sendHead(false);
    if (!this.stream.headersSent || this.stream.writableEnded) return true; // the head was refused: answered 502
    const ok = this.stream.write(chunk);
    if (!ok) this.stream.once('drain', onH2Drain);
    return ok;
  }

  onResponseEnd(trailers: Headers | undefined): void {
    this.finish(this.status);
    if (this.head !== undefined && trailers === undefined) {
      this.sendHead(true);
      return;
    }
    this.trailers = trailers;
    this.sendHead(false, trailers !== undefined);
    if (!this.stream.destroyed) this.stream.end();
  }

  sendTrailers(): void {
    const t = this.trailers;
    const out: http2.OutgoingHttpHeaders = {};
    if (t !== undefined) for (const k in t) if (t[k] !== undefined) out[k] = t[k];
    sendTrailersSafely(this.stream, out);
  }

  onResponseError(error: LocalReplyError): void {
    this.scope.metrics.localError(error.reason);
    this.head = undefined;
    if (this.stream.headersSent) {
      this.finish(this.status);
      if (this.grpc && !this.stream.destroyed) {
        // A gRPC response broken midway ends with UNAVAILABLE naming the cause (what a client talking to the app
        // directly reads when the connection drops, and retries), rather than a reset grpc-js reports as INTERNAL.
        this.trailers = { 'grpc-status': '14', 'grpc-message': grpcMessage(error.message), [REASON_HEADER]: error.reason };
        this.stream.end();
        return;
      }
      // A reset, never an end: close() would first end the writable side, and a stream not waiting for trailers
      // would then send END_STREAM, making a truncated response look complete.
      if (!this.stream.destroyed) this.stream.destroy(new Error(error.message));
      return;
    }
    this.finish(error.status);
    replyH2(this.stream, error.status, error.reason, error.message, this.grpc);
  }

  private finish(status: number): void {
    if (this.done) return;
    this.done = true;
    this.cm.observe(status, (performance.now() - this.startedAt) / 1000);
  }

  resume(): void {
    this.controller?.resume();
  }

  closed(): void {
    if (this.done) return;
    this.finish(499);
    this.controller?.abort();
  }
}

function onH2Close(this: http2.ServerHttp2Stream): void {
  (this as unknown as Record<symbol, H2Downstream>)[kEx]?.closed();
}
function onH2Drain(this: http2.ServerHttp2Stream): void {
  (this as unknown as Record<symbol, H2Downstream>)[kEx]?.resume();
}
const END_STREAM: http2.ServerStreamResponseOptions = { endStream: true };
const WAIT_FOR_TRAILERS: http2.ServerStreamResponseOptions = { waitForTrailers: true };

function flushH2Head(ex: H2Downstream): void {
  ex.sendHead(false);
}
function onWantTrailers(this: http2.ServerHttp2Stream): void {
  (this as unknown as Record<symbol, H2Downstream>)[kEx]?.sendTrailers();
}
