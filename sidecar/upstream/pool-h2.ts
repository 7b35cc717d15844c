// One request as an HTTP/2 stream on the endpoint's shared session (gRPC and h2c upstreams; trailers carried).
import http2 from 'node:http2';
import type { DispatchController, DispatchHandler, DispatchRequest, Headers } from './dispatch.ts';
import { upstreamReset } from '../listeners/errors.ts';
import type { EndpointPool } from './pool.ts';
import { upstreamError } from './pool.ts';
import { isSettled, whenSettled } from './h2-settings.ts';
import { firstValues, sendTrailersSafely } from './h2-headers.ts';

const { HTTP2_HEADER_STATUS } = http2.constants;

const kExchange = Symbol('skein.h2exchange');
type WithExchange = { [kExchange]: H2Exchange };

/** Sends `req` on the pool's HTTP/2 session; the pool's active count is already raised. */
export function sendH2(pool: EndpointPool, req: DispatchRequest, handler: DispatchHandler): void {
  new H2Exchange(pool, req, handler);
}

class H2Exchange implements DispatchController {
  readonly pool: EndpointPool;
  private readonly handler: DispatchHandler;
  private readonly startedAt: number;
  private stream: http2.ClientHttp2Stream | undefined;
  private trailers: Headers | undefined;
  private started = false;
  private finished = false;
  /**
   * Body bytes that came before the response head. Node emits a client stream's 'response' on the next tick, so
   * DATA read in the same chunk as the HEADERS can be pushed (and 'end' emitted) first; they wait for the head.
   */
  private early: Buffer[] | undefined;
  /** The stream ended before its head was seen: its end was put off once, for the head's 'response' to come. */
  private endPutOff = false;
  /** The caller's request trailers (an HTTP/2 caller's HEADERS after its DATA), sent on once its body has gone. */
  private requestTrailers: http2.OutgoingHttpHeaders | undefined;
  /** The body is an HTTP/2 caller's stream, so trailers may end it. */
  private readonly h2Body: boolean;

  constructor(pool: EndpointPool, req: DispatchRequest, handler: DispatchHandler) {
    this.pool = pool;
    this.handler = handler;
    this.startedAt = pool.load.start();
    const headers: http2.OutgoingHttpHeaders = {
      ':method': req.method,
      ':path': req.path,
      ':authority': req.authority,
      ':scheme': 'http',
    };
    const src = req.headers;
    for (let i = 0; i < src.length; i += 2) {
      const name = src[i] as string;
      const value = src[i + 1] as string;
      const v = headers[name];
      if (v === undefined) headers[name] = value;
      else if (Array.isArray(v)) v.push(value);
      else headers[name] = [String(v), value];
    }
    // gRPC needs `te: trailers`; it is the one hop-by-hop header HTTP/2 allows.
    if (req.wantsH2) headers['te'] = 'trailers';
    // An HTTP/2 caller's body may end with trailers: the upstream stream then waits for them (or ends with an empty
    // DATA frame when none came), as Envoy forwards request trailers between HTTP/2 hops. Listened for from here, so
    // trailers that come while the session is still connecting are kept.
    const body = req.body;
    this.h2Body = body !== null && isHttp2Stream(body);
    if (this.h2Body) {
      (body as unknown as WithExchange)[kExchange] = this;
      (body as NonNullable<typeof body>).once('trailers', onRequestTrailers);
    }
    handler.onRequestStart(this);
    let session: http2.ClientHttp2Session;
    try {
      session = pool.session();
    } catch (err) {
      this.fail(err as NodeJS.ErrnoException);
      return;
    }
    // The usual case (a session already up) opens at once, without the closures a wait needs.
    if (isSettled(session)) this.open(session, headers, req.body);
    else
      whenSettled(
        session,
        () => this.open(session, headers, req.body),
        (err) => this.fail(err),
      );
  }

  /** Opens the stream once the session can take it (see whenSettled); the request body follows. */
  private open(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: DispatchRequest['body']): void {
    if (this.finished) return;
    let stream: http2.ClientHttp2Stream;
    const h2Body = this.h2Body;
    const options = { endStream: body === null, waitForTrailers: h2Body };
    try {
      stream = session.request(headers, options);
    } catch (err) {
      // An HTTP/1.1 caller's repeated single-value header (two User-Agents) goes with its first value.
      try {
        stream = session.request(firstValues(headers), options);
      } catch {
        this.fail(err as NodeJS.ErrnoException);
        return;
      }
    }
    this.stream = stream;
    (stream as unknown as WithExchange)[kExchange] = this;
    stream.on('response', onResponse);
    stream.on('data', onData);
    stream.on('trailers', onTrailers);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
    if (h2Body) stream.once('wantTrailers', onWantTrailers);
    if (body !== null) body.pipe(stream);
  }

  gotRequestTrailers(h: http2.IncomingHttpHeaders): void {
    const out: http2.OutgoingHttpHeaders = {};
    for (const name in h) if (name.charCodeAt(0) !== 0x3a) out[name] = h[name];
    this.requestTrailers = out;
  }

  /** The request body has gone: its trailers, or none (an empty DATA frame with END_STREAM). */
  sendRequestTrailers(): void {
    const s = this.stream;
    if (s === undefined || s.destroyed) return;
    sendTrailersSafely(s, this.requestTrailers);
  }

  response(h: http2.IncomingHttpHeaders): void {
    const status = Number(h[HTTP2_HEADER_STATUS] ?? 502);
    const out: Headers = {};
    for (const name in h) if (name.charCodeAt(0) !== 0x3a) out[name] = h[name];
    // 1xx informational responses are not forwarded.
    if (status < 200 || this.finished) return;
    this.started = true;
    this.handler.onResponseStart(status, out);
    const early = this.early;
    if (early === undefined) return;
    this.early = undefined;
    let ok = true;
    for (const chunk of early) ok = this.handler.onResponseData(chunk) && ok;
    if (!ok) this.stream?.pause();
  }

  data(chunk: Buffer): void {
    if (this.finished) return;
    if (!this.started) {
      (this.early ??= []).push(chunk);
      return;
    }
    if (!this.handler.onResponseData(chunk)) this.stream?.pause();
  }

  gotTrailers(h: http2.IncomingHttpHeaders): void {
    const out: Headers = {};
    for (const name in h) if (name.charCodeAt(0) !== 0x3a) out[name] = h[name];
    this.trailers = out;
  }

  end(): void {
    if (this.finished) return;
    // A stream that ends without a response (the peer closed the session) is a reset, not an empty answer. Node also
    // ends the readable side of a stream that was reset or whose connection died (rstCode set by then): passing that
    // on as a complete response would truncate it silently.
    const rst = this.stream?.rstCode;
    const reset = rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR;
    if (!this.started && !reset && !this.endPutOff) {
      this.endPutOff = true;
      setImmediate(endLater, this);
      return;
    }
    if (!this.started || reset) {
      this.endPutOff = false;
      this.closed();
      return;
    }
    this.finished = true;
    // A stream sent on a session still connecting starts its latency sample when the session came up.
    this.pool.load.finish(Math.max(this.startedAt, this.pool.sessionReadyAt));
    this.pool.release();
    this.handler.onResponseEnd(this.trailers);
  }

  fail(error: NodeJS.ErrnoException): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.load.finish(this.startedAt, true);
    this.pool.release();
    this.stream?.destroy();
    // A stream waiting for its session fails with ERR_HTTP2_STREAM_CANCEL; the session's own error (a refused
    // connection, a failed handshake) is its cause, and names what happened.
    const cause = (error as { cause?: unknown }).cause as NodeJS.ErrnoException | undefined;
    const err = error.code === 'ERR_HTTP2_STREAM_CANCEL' && cause?.code !== undefined ? cause : error;
    this.handler.onResponseError(
      this.started ? upstreamReset(err.code ?? 'ECONNRESET', this.pool.dialTarget, err) : upstreamError(err, this.pool.dialTarget),
    );
  }

  closed(): void {
    if (this.finished) return;
    const s = this.stream;
    // The end is waiting for the head (see `early`); a clean close leaves the decision to it.
    if (this.endPutOff && (s?.rstCode === undefined || s.rstCode === http2.constants.NGHTTP2_NO_ERROR)) return;
    const code = s !== undefined && s.rstCode !== undefined && s.rstCode !== 0 ? `RST_STREAM(${s.rstCode})` : 'ECONNRESET';
    const err = new Error(`stream closed before the response ended`) as NodeJS.ErrnoException;
    err.code = code;
    this.fail(err);
  }

  pause(): void {
    this.stream?.pause();
  }
  resume(): void {
    this.stream?.resume();
  }
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.load.finish(this.startedAt);
    this.pool.release();
    this.stream?.close(http2.constants.NGHTTP2_CANCEL);
  }
}

/** A request body that is itself an HTTP/2 stream (an h2c caller's), which may end with trailers. */
function isHttp2Stream(body: NonNullable<DispatchRequest['body']>): boolean {
  return (body as { session?: unknown }).session !== undefined && typeof (body as { sendTrailers?: unknown }).sendTrailers === 'function';
}
function onRequestTrailers(this: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders): void {
  (this as unknown as WithExchange)[kExchange].gotRequestTrailers(h);
}
function onWantTrailers(this: http2.ClientHttp2Stream): void {
  (this as unknown as WithExchange)[kExchange].sendRequestTrailers();
}
function endLater(ex: H2Exchange): void {
  ex.end();
}
function onResponse(this: http2.ClientHttp2Stream, h: http2.IncomingHttpHeaders): void {
  (this as unknown as WithExchange)[kExchange].response(h);
}
function onData(this: http2.ClientHttp2Stream, chunk: Buffer): void {
  (this as unknown as WithExchange)[kExchange].data(chunk);
}
function onTrailers(this: http2.ClientHttp2Stream, h: http2.IncomingHttpHeaders): void {
  (this as unknown as WithExchange)[kExchange].gotTrailers(h);
}
function onEnd(this: http2.ClientHttp2Stream): void {
  (this as unknown as WithExchange)[kExchange].end();
}
function onError(this: http2.ClientHttp2Stream, err: NodeJS.ErrnoException): void {
  (this as unknown as WithExchange)[kExchange].fail(err);
}
function onClose(this: http2.ClientHttp2Stream): void {
  (this as unknown as WithExchange)[kExchange].closed();
}
