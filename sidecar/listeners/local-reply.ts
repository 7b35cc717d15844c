// Local replies (errors the sidecar answers itself): status, x-skein-reason, a text body, for node:http responses and HTTP/2 streams.
import type http from 'node:http';
import type http2 from 'node:http2';
import type { LocalReason } from './errors.ts';

export const REASON_HEADER = 'x-skein-reason';

/** gRPC status for a local reply, so gRPC clients see a meaningful code (Envoy's mapping). */
function grpcStatus(status: number): string {
  if (status === 504) return '4'; // DEADLINE_EXCEEDED
  if (status === 404) return '12'; // UNIMPLEMENTED
  if (status === 400 || status === 431) return '13'; // INTERNAL
  return '14'; // UNAVAILABLE
}

export function replyH1(res: http.ServerResponse, status: number, reason: LocalReason, message: string, close: boolean): void {
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
  const body = `${message}\n`;
  const headers: http2.OutgoingHttpHeaders = {
    ':status': status,
    'content-type': 'text/plain; charset=utf-8',
    [REASON_HEADER]: reason,
  };
  if (grpc) {
    headers['grpc-status'] = grpcStatus(status);
    headers['grpc-message'] = encodeURIComponent(message);
  }
  stream.respond(headers);
  stream.end(body);
}
