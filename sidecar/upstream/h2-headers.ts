// HTTP/2 heads and trailers passed on from elsewhere, made acceptable to node:http2 so that sending them never throws.
import type http2 from 'node:http2';

/**
 * Ends `stream` with `trailers`. Trailers node refuses to send (a connection-specific field such as `connection` or
 * `transfer-encoding`, which an HTTP/1.1 app may put in its chunked trailers) are dropped and the stream still ends;
 * if even that fails, the stream is reset. Runs in 'wantTrailers' callbacks, where a throw would end the process.
 */
export function sendTrailersSafely(stream: http2.Http2Stream, trailers: http2.OutgoingHttpHeaders | undefined): void {
  try {
    stream.sendTrailers(trailers ?? {});
  } catch {
    try {
      stream.sendTrailers({});
    } catch {
      stream.destroy();
    }
  }
}

/**
 * The head with every repeated field cut to its first value, Set-Cookie excepted: node:http2 refuses repeats of
 * many fields (Content-Type, Location, User-Agent... ERR_HTTP2_HEADER_SINGLE_VALUE) that HTTP/1.1 peers do send.
 */
export function firstValues<T extends http2.OutgoingHttpHeaders>(head: T): T {
  const out: http2.OutgoingHttpHeaders = {};
  for (const name in head) {
    const v = head[name];
    out[name] = Array.isArray(v) && name !== 'set-cookie' ? v[0] : v;
  }
  return out as T;
}

/** Fields node:http2 refuses in a head as connection-specific, which an HTTP/1.1 app (or a lax HTTP/2 one) may send. */
const CONNECTION_FIELDS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

/**
 * stream.respond(), which throws on a head node:http2 will not send (a repeated single-value field, a
 * connection-specific one, a `:status` outside 100–599). A refused head is sent again with repeats cut to their
 * first value and connection-specific fields dropped; what is still refused (an impossible status) is returned for
 * the caller to answer 502. Never throws: it runs in socket and stream callbacks, where a throw ends the process.
 */
export function respondSafely(stream: http2.ServerHttp2Stream, head: http2.OutgoingHttpHeaders, options?: http2.ServerStreamResponseOptions): Error | undefined {
  try {
    stream.respond(head, options);
    return undefined;
  } catch (err) {
    const clean = firstValues(head);
    for (const name of CONNECTION_FIELDS) delete clean[name];
    if (clean['te'] !== undefined && clean['te'] !== 'trailers') delete clean['te'];
    try {
      stream.respond(clean, options);
      return undefined;
    } catch {
      return err as Error;
    }
  }
}
