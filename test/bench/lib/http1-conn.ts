// A lean HTTP/1.1 keep-alive client connection for the load generator: one fixed request, one response at a time.
import net from 'node:net';

/** Builds the bytes of the GET request the generator repeats (no body). */
export function requestBytes(host: string, path = '/'): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: skein-bench\r\nAccept: */*\r\n\r\n`, 'latin1');
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** What the parser found so far in the response bytes. */
export type ParseState =
  | { readonly kind: 'partial' }
  /** `consumed` bytes make one whole response; `close` when the server said it will close. */
  | { readonly kind: 'done'; readonly status: number; readonly consumed: number; readonly close: boolean };

/**
 * Parses one HTTP/1.1 response at the start of `buf` (Content-Length or chunked bodies; a response to GET).
 * Throws on bytes that are not an HTTP/1.x response. wrk does the same job with http-parser; Node's llhttp binding
 * is not public, and node:http's client costs more per request than the proxies we measure.
 */
export function parseResponse(buf: Buffer): ParseState {
  const headEnd = buf.indexOf(CRLFCRLF);
  if (headEnd < 0) {
    if (buf.length > 65536) throw new Error('response head over 64 KiB');
    return { kind: 'partial' };
  }
  const head = buf.toString('latin1', 0, headEnd);
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (!m) throw new Error(`not an HTTP/1.x response: ${JSON.stringify(head.slice(0, 40))}`);
  const status = Number(m[1]);
  let length = -1;
  let chunked = false;
  let close = head.startsWith('HTTP/1.0');
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === 'content-length') length = Number(value);
    else if (name === 'transfer-encoding') chunked = value.endsWith('chunked');
    else if (name === 'connection') close = value.includes('close') ? true : value.includes('keep-alive') ? false : close;
  }
  const bodyStart = headEnd + 4;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
    return { kind: 'done', status, consumed: bodyStart, close };
  }
  if (chunked) {
    let at = bodyStart;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at, 'latin1');
      if (lineEnd < 0) return { kind: 'partial' };
      const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
      if (!Number.isFinite(size)) throw new Error('bad chunk size');
      if (size === 0) {
        // Trailers (none expected) end with an empty line.
        const end = buf.indexOf(CRLFCRLF, lineEnd);
        if (end >= 0) return { kind: 'done', status, consumed: end + 4, close };
        if (buf.length >= lineEnd + 4 && buf[lineEnd + 2] === 0x0d && buf[lineEnd + 3] === 0x0a) {
          return { kind: 'done', status, consumed: lineEnd + 4, close };
        }
        return { kind: 'partial' };
      }
      at = lineEnd + 2 + size + 2;
      if (at > buf.length) return { kind: 'partial' };
    }
  }
  if (length < 0) throw new Error('response without Content-Length or chunked encoding (read-until-close is not supported)');
  if (buf.length < bodyStart + length) return { kind: 'partial' };
  return { kind: 'done', status, consumed: bodyStart + length, close };
}

export interface Completion {
  readonly status: number;
  /** Whether this request went on a connection that had served a request before. */
  readonly reused: boolean;
}

/** One keep-alive connection; `send` may be called again only after the previous callback ran. */
export class Http1Conn {
  readonly socket: net.Socket;
  private buf: Buffer | undefined;
  private pending: ((err: Error | undefined, done: Completion | undefined) => void) | undefined;
  private served = 0;
  closed = false;
  readonly ready: Promise<void>;

  constructor(host: string, port: number, onClose: (conn: Http1Conn) => void) {
    this.socket = net.connect({ host, port, noDelay: true });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.ready.catch(() => {});
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      const p = this.pending;
      this.pending = undefined;
      p?.(new Error('connection closed'), undefined);
      onClose(this);
    });
  }

  get busy(): boolean {
    return this.pending !== undefined;
  }

  send(bytes: Buffer, done: (err: Error | undefined, result: Completion | undefined) => void): void {
    if (this.pending !== undefined) throw new Error('Http1Conn.send while a request is in flight');
    this.pending = done;
    this.socket.write(bytes);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf === undefined || this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let state: ParseState;
    try {
      state = parseResponse(this.buf);
    } catch (err) {
      this.socket.destroy(err as Error);
      return;
    }
    if (state.kind === 'partial') return;
    this.buf = this.buf.subarray(state.consumed);
    const p = this.pending;
    this.pending = undefined;
    const reused = this.served > 0;
    this.served++;
    if (state.close) this.socket.end();
    p?.(undefined, { status: state.status, reused });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One GET on a fresh connection; resolves with the status (used to check a path before loading it). */
export async function getOnce(host: string, port: number, authority: string, path = '/'): Promise<number> {
  const conn = new Http1Conn(host, port, () => {});
  try {
    await conn.ready;
    return await new Promise<number>((resolve, reject) =>
      conn.send(requestBytes(authority, path), (err, r) => (err !== undefined || r === undefined ? reject(err) : resolve(r.status))),
    );
  } finally {
    conn.close();
  }
}
