// The request path's one seam: a dispatch function and interceptors composed around it (undici's compose style).
import type { Readable } from 'node:stream';
import type { LocalReplyError } from '../listeners/errors.ts';

/** Header values as node:http/node:http2 give and take them. */
export type Headers = Record<string, string | string[] | undefined>;

/**
 * Request headers as a flat `[name, value, name, value, ...]` list (node's rawHeaders and undici's array form): names
 * lower-case, no hop-by-hop headers, no Host and no pseudo-headers (the upstream sends `authority` as Host or :authority).
 */
export type HeaderList = string[];

/** One request to a cluster. Built once per request by the listener; interceptors may read and adjust it. */
export interface DispatchRequest {
  cluster: string;
  method: string;
  /** Origin-form path with query. */
  path: string;
  authority: string;
  /** Request headers to forward (see HeaderList). */
  headers: HeaderList;
  /** The request body stream, or null when the request has none. */
  body: Readable | null;
  /** The hash key for ring-hash clusters (the value of the route's hash header). */
  hash: string | undefined;
  /** True for gRPC or when the client spoke HTTP/2: the upstream must carry trailers. */
  wantsH2: boolean;
  /** Route timeout (0 = none). */
  timeoutMs: number;
  /** The body's kept copy, when it has one: the request can then be sent again (undefined: bodiless, or not kept). */
  replay?: ReplayableBody | undefined;
}

/**
 * A request body that keeps a copy of its bytes, up to a limit, so the request can be sent once more after an answer
 * that proves the destination app never saw it (a peer sidecar's `503 upstream_connect_error`).
 */
export interface ReplayableBody {
  /** False once the body outgrew the limit (or broke): it can no longer be sent again. */
  readonly replayable: boolean;
  /**
   * Calls `then` with a fresh stream of the whole body once the client has sent all of it (at once if it has), or
   * with undefined if it outgrows the limit or the client goes away first. Reads the rest if nobody does.
   */
  whenComplete(then: (replay: Readable | undefined) => void): void;
}

/** What the upstream side can be asked to do once a request is under way. */
export interface DispatchController {
  /** Stop reading the upstream response (downstream is full). */
  pause(): void;
  resume(): void;
  /** Abandon the request: close the upstream stream or connection. */
  abort(): void;
}

/**
 * Receives the outcome of a dispatch. Exactly one of onResponseEnd or onResponseError is called last.
 * onResponseError after onResponseStart means the response broke midway (reset the downstream).
 */
export interface DispatchHandler {
  onRequestStart(controller: DispatchController): void;
  onResponseStart(status: number, headers: Headers): void;
  /** Return false to ask for backpressure (the controller's pause/resume follow). */
  onResponseData(chunk: Buffer): boolean;
  onResponseEnd(trailers: Headers | undefined): void;
  onResponseError(error: LocalReplyError): void;
}

export type Dispatch = (request: DispatchRequest, handler: DispatchHandler) => void;

/** Wraps a dispatch: timeout, retry, circuit breaking and tracing slot in here. */
export type Interceptor = (next: Dispatch) => Dispatch;

/** Composes interceptors around a dispatch; the first interceptor is the outermost. */
export function compose(base: Dispatch, ...interceptors: readonly Interceptor[]): Dispatch {
  let d = base;
  for (let i = interceptors.length - 1; i >= 0; i--) d = (interceptors[i] as Interceptor)(d);
  return d;
}

/** Request and response headers that concern one connection and are never forwarded (RFC 9110 §7.6.1). */
export const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-authorization',
  'proxy-authenticate',
  'http2-settings',
] as const;

/** Headers never forwarded from a request: hop-by-hop ones, Host (sent from `authority`) and Expect (answered here). */
/**
 * Not forwarded: hop-by-hop headers, Host (sent as the authority), Expect (answered here), and the caller identity
 * headers an inbound sidecar sets from the verified certificate (an app could otherwise send a forged one along).
 */
const DROPPED_REQUEST_HEADERS = new Set<string>([...HOP_BY_HOP, 'host', 'expect', 'x-skein-peer-identity', 'x-forwarded-client-cert']);

/** What one pass over a request's headers found besides the list to forward. */
export interface RequestHeadInfo {
  /** The Host header (first one). */
  host: string | undefined;
  /** A body follows: Transfer-Encoding, or a Content-Length other than 0. */
  hasBody: boolean;
  /** More than one Host header came (RFC 9112 §3.2: answer 400). */
  manyHosts?: boolean;
}

/**
 * Builds the forwarded header list from node's `rawHeaders` in one pass (names lower-cased; hop-by-hop, Host and
 * Expect left out, and any header the Connection header names). Fills `info` with the Host and whether a body follows.
 */
export function headerListFromRaw(raw: readonly string[], info: RequestHeadInfo): HeaderList {
  const out: HeaderList = [];
  let connection: string | undefined;
  info.host = undefined;
  info.hasBody = false;
  info.manyHosts = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (DROPPED_REQUEST_HEADERS.has(name)) {
      if (name === 'host') {
        if (info.host === undefined) info.host = value;
        else info.manyHosts = true;
      }
      else if (name === 'transfer-encoding') info.hasBody = true;
      else if (name === 'connection') connection = connection === undefined ? value : `${connection},${value}`;
      continue;
    }
    if (name === 'content-length' && value !== '0') info.hasBody = true;
    out.push(name, value);
  }
  return connection === undefined ? out : dropConnectionListed(out, connection);
}

/** The forwarded header list of an HTTP/2 request (pseudo-headers, hop-by-hop ones and Host left out). */
export function headerListFromObject(h: Headers): HeaderList {
  const out: HeaderList = [];
  const connection = h['connection'];
  for (const name in h) {
    if (name.charCodeAt(0) === 0x3a /* : */ || DROPPED_REQUEST_HEADERS.has(name)) continue;
    const v = h[name];
    if (v === undefined) continue;
    if (typeof v === 'string') out.push(name, v);
    else for (const one of v) out.push(name, one);
  }
  return connection === undefined ? out : dropConnectionListed(out, String(connection));
}

function dropConnectionListed(list: HeaderList, connection: string): HeaderList {
  const named = new Set<string>();
  for (const n of connection.split(',')) {
    const t = n.trim().toLowerCase();
    if (t !== '') named.add(t);
  }
  if (named.size === 0) return list;
  const out: HeaderList = [];
  for (let i = 0; i < list.length; i += 2) if (!named.has(list[i] as string)) out.push(list[i] as string, list[i + 1] as string);
  return out;
}

/** The value of header `name` (lower-case) in a list, repeated values joined with `,`; undefined when absent. */
export function headerListValue(list: HeaderList, name: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) v = v === undefined ? list[i + 1] : `${v},${list[i + 1]}`;
  return v;
}

/** Removes hop-by-hop headers (and any named in Connection) in place; returns the same object. */
export function stripHopByHop(headers: Headers): Headers {
  const conn = headers['connection'];
  if (conn !== undefined) {
    for (const name of String(conn).split(',')) {
      const n = name.trim().toLowerCase();
      if (n !== '') delete headers[n];
    }
  }
  for (const h of HOP_BY_HOP) if (headers[h] !== undefined) delete headers[h];
  return headers;
}
