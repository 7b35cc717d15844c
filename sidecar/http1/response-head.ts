// HTTP/1.1 response heads as text: status line and headers serialized once, body framing chosen from the request and response.
import { nodeHttp } from '../builtins.ts';

const { STATUS_CODES } = nodeHttp;

type HeaderValue = string | string[] | number | undefined;

/** How a response body is delimited on the client connection. */
export const FRAME_NONE = 0; // HEAD, 1xx, 204, 304: no body whatever the headers say
export const FRAME_LENGTH = 1; // Content-Length from the upstream, bytes passed through
export const FRAME_CHUNKED = 2; // length unknown, HTTP/1.1 client
export const FRAME_CLOSE = 3; // length unknown, HTTP/1.0 client: the body ends when the connection does
export type Framing = typeof FRAME_NONE | typeof FRAME_LENGTH | typeof FRAME_CHUNKED | typeof FRAME_CLOSE;

const statusLines: string[] = [];

/** `HTTP/1.1 200 OK\r\n`, cached per status. */
export function statusLine(status: number): string {
  return (statusLines[status] ??= `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`);
}

/** The body framing for a response: `head` when the request was HEAD, `http10` for an HTTP/1.0 client. */
export function chooseFraming(status: number, hasLength: boolean, head: boolean, http10: boolean): Framing {
  if (head || status < 200 || status === 204 || status === 304) return FRAME_NONE;
  if (hasLength) return FRAME_LENGTH;
  return http10 ? FRAME_CLOSE : FRAME_CHUNKED;
}

/**
 * The whole head for one response: status line, the upstream's headers (hop-by-hop ones already removed; array
 * values as repeated lines), then transfer-encoding and connection as the framing and keep-alive call for.
 */
export function responseHead(status: number, headers: Readonly<Record<string, HeaderValue>>, framing: Framing, connection: string | undefined): string {
  let s = statusLine(status);
  // A 204 has no body, so no Content-Length (RFC 9110 §8.6); an app that sends one anyway is corrected, as by Envoy.
  const noLength = status === 204 || status < 200;
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || (noLength && name === 'content-length')) continue;
    // HTTP/1.1 clients are sent no trailers (see LAST_CHUNK), so none is announced.
    if (name === 'trailer') continue;
    if (typeof v === 'object') for (const one of v) s += `${name}: ${one}\r\n`;
    else s += `${name}: ${v}\r\n`;
  }
  if (framing === FRAME_CHUNKED) s += 'transfer-encoding: chunked\r\n';
  if (connection !== undefined) s += `connection: ${connection}\r\n`;
  return `${s}\r\n`;
}

/** A locally generated reply (status, reason header, text body) as one string; `body` false for HEAD requests. */
export function localReplyText(status: number, reasonHeader: string, reason: string, message: string, connection: string | undefined, body: boolean): string {
  const text = `${message}\n`;
  return (
    `${statusLine(status)}content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\n` +
    `${reasonHeader}: ${reason}\r\n${connection === undefined ? '' : `connection: ${connection}\r\n`}\r\n${body ? text : ''}`
  );
}

/** The line before a chunk of `size` bytes in a chunked body. */
export function chunkHeader(size: number): string {
  return `${size.toString(16)}\r\n`;
}

export const CRLF = '\r\n';
/** The last chunk of a chunked body (no trailers: HTTP/1 clients get none, as node:http's did not ask for them). */
export const LAST_CHUNK = '0\r\n\r\n';
export const CONTINUE_100 = 'HTTP/1.1 100 Continue\r\n\r\n';
