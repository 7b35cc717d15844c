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
