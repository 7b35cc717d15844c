// Local replies (errors the sidecar answers itself): status, x-skein-reason, a text body, for node:http responses and HTTP/2 streams.
import type http from 'node:http';
import type http2 from 'node:http2';
import type { LocalReason } from './errors.ts';

export const REASON_HEADER = 'x-skein-reason';

/** The gRPC status for a local reply's HTTP status (Envoy's mapping, with a timeout as DEADLINE_EXCEEDED). */
export function grpcStatus(status: number): number {
  switch (status) {
    case 400:
    case 431:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 408:
    case 504:
      return 4; // DEADLINE_EXCEEDED
    default:
      return status === 429 || status >= 500 ? 14 : 2; // UNAVAILABLE, else UNKNOWN
  }
}

/** grpc-message's encoding (gRPC over HTTP/2): UTF-8, with '%' and bytes outside printable ASCII percent-encoded. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out += b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

/** The responses and streams answered by replyH1/replyH2, with their reason (for counting, see localReasonOf). */
const answered = new WeakMap<object, LocalReason>();

/** The reason of a local reply made on `res` (a ServerResponse or an HTTP/2 stream), undefined for the app's answers. */
export function localReasonOf(res: object): LocalReason | undefined {
  return answered.get(res);
}

export function replyH1(res: http.ServerResponse, status: number, reason: LocalReason, message: string, close: boolean): void {
  answered.set(res, reason);
  const body = `${message}\n`;
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    [REASON_HEADER]: reason,
  };
  if (close) headers['connection'] = 'close';
  res.writeHead(status, headers);
  res.end(body);
}

export function replyH2(stream: http2.ServerHttp2Stream, status: number, reason: LocalReason, message: string, grpc: boolean): void {
  if (stream.destroyed || stream.closed) return;
  answered.set(stream, reason);
  if (grpc && status >= 400) {
    // As Envoy answers gRPC: a trailers-only response, HTTP 200, the error in grpc-status and grpc-message. A gRPC
    // client reads those; given an HTTP error status it would report only "Received HTTP status code 503".
    stream.respond(
      {
        ':status': 200,
        'content-type': 'application/grpc',
        'grpc-status': String(grpcStatus(status)),
        'grpc-message': grpcMessage(message),
        [REASON_HEADER]: reason,
      },
      { endStream: true },
    );
    return;
  }
  const body = `${message}\n`;
  stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', [REASON_HEADER]: reason });
  stream.end(body);
}
