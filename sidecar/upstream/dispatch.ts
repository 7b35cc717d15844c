// The request path's one seam: a dispatch function and interceptors composed around it (undici's compose style).
import type { Readable } from 'node:stream';
import type { LocalReplyError } from '../listeners/errors.ts';

/** Header values as node:http/node:http2 give and take them. */
export type Headers = Record<string, string | string[] | undefined>;

/** One request to a cluster. Built once per request by the listener; interceptors may read and adjust it. */
export interface DispatchRequest {
  cluster: string;
  method: string;
  /** Origin-form path with query. */
  path: string;
  authority: string;
  /** Request headers without hop-by-hop ones; pseudo-headers never appear here. */
  headers: Headers;
  /** The request body stream, or null when the request has none. */
  body: Readable | null;
  /** The hash key for ring-hash clusters (the value of the route's hash header). */
  hash: string | undefined;
  /** True for gRPC or when the client spoke HTTP/2: the upstream must carry trailers. */
  wantsH2: boolean;
  /** Route timeout (0 = none). */
  timeoutMs: number;
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
