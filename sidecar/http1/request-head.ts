// Serializes an HTTP/1.1 request head (request line, Host, forwarded headers, framing) for one socket write.

/** A request line or header that would break HTTP/1.1 framing (CR, LF, NUL, or a name that is not a token). */
export class InvalidRequestHeadError extends Error {
  readonly code = 'SKEIN_HTTP1_REQUEST_HEAD';
  constructor(what: string) {
    super(`${what} cannot be sent as HTTP/1.1 (it holds characters not allowed there)`);
    this.name = 'InvalidRequestHeadError';
  }
}

/** How the request body is framed on the wire. */
export type BodyFraming = 'none' | 'length' | 'chunked';

// RFC 9110 token characters for methods and header names; field values: VCHAR, obs-text, SP and HTAB.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
// request-target: no controls, no space.
const BAD_TARGET = /[^\x21-\x7e\x80-\xff]/;

/**
 * The request head as a latin1 string (write it with the 'latin1' encoding): `method path HTTP/1.1`, `host`,
 * `connection: keep-alive` (as undici sends it, for servers that still read HTTP/1.0 rules) or, with `upgrade`,
 * `connection: upgrade` and `upgrade: <protocol>`, the forwarded `[name, value, ...]` list, and `transfer-encoding: chunked` when the body is chunked. Throws
 * InvalidRequestHeadError when a part would break the framing.
 */
export function requestHead(
  method: string,
  path: string,
  authority: string,
  headers: readonly string[],
  framing: BodyFraming,
  upgrade?: string,
): string {
  if (!TOKEN.test(method)) throw new InvalidRequestHeadError(`the method "${method}"`);
  if (path === '' || BAD_TARGET.test(path)) throw new InvalidRequestHeadError(`the path "${path}"`);
  if (BAD_VALUE.test(authority)) throw new InvalidRequestHeadError('the Host value');
  if (upgrade !== undefined && BAD_VALUE.test(upgrade)) throw new InvalidRequestHeadError('the Upgrade value');
  const connection = upgrade === undefined ? 'connection: keep-alive\r\n' : `connection: upgrade\r\nupgrade: ${upgrade}\r\n`;
  let head = `${method} ${path} HTTP/1.1\r\nhost: ${authority}\r\n${connection}`;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    const value = headers[i + 1] as string;
    if (!TOKEN.test(name)) throw new InvalidRequestHeadError(`the header name "${name}"`);
    if (BAD_VALUE.test(value)) throw new InvalidRequestHeadError(`the value of header "${name}"`);
    head += `${name}: ${value}\r\n`;
  }
  if (framing === 'chunked') head += 'transfer-encoding: chunked\r\n';
  return `${head}\r\n`;
}

/** The framing for a request: none without a body, its Content-Length when the list has one, else chunked. */
export function bodyFraming(hasBody: boolean, headers: readonly string[]): BodyFraming {
  if (!hasBody) return 'none';
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'content-length') return 'length';
  return 'chunked';
}

/** The CRLF after a chunk's data. */
export const CRLF = Buffer.from('\r\n');
/** The last chunk of a chunked body (no trailers). */
export const LAST_CHUNK = Buffer.from('0\r\n\r\n');

/** The chunk-size line before `length` bytes of a chunked body. */
export function chunkHeader(length: number): string {
  return `${length.toString(16)}\r\n`;
}
