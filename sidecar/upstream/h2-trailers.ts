// Ends an HTTP/2 stream with trailers passed on from elsewhere, without ever throwing from an event callback.
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
