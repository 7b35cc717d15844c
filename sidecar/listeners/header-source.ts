// Request headers as route matching reads them (an object like node's req.headers), built only when a route matches on headers.
import type http2 from 'node:http2';
import type { RequestHeaders } from '../router/index.ts';
import type { Headers } from '../upstream/index.ts';

/** Where resolve() reads request headers from when a route matches on them. */
export interface HeaderSource {
  readonly headers: RequestHeaders;
}

export const NO_HEADERS: RequestHeaders = Object.freeze({});

/** An HTTP/1.1 request's raw `[name, value, ...]` pairs as node:http showed them: names lower-case, repeats joined with ", ". */
export class RawHeaderSource implements HeaderSource {
  private readonly raw: readonly string[];
  constructor(raw: readonly string[]) {
    this.raw = raw;
  }
  get headers(): RequestHeaders {
    const out: Record<string, string> = {};
    const raw = this.raw;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const value = raw[i + 1] as string;
      const had = out[name];
      out[name] = had === undefined ? value : `${had}, ${value}`;
    }
    return out;
  }
}

/** An HTTP/2 request's headers for route matching as HTTP/1.1 shows them (no pseudo-headers, `host` present). */
export class H2HeaderSource implements HeaderSource {
  private readonly h: http2.IncomingHttpHeaders;
  private readonly authority: string;
  constructor(h: http2.IncomingHttpHeaders, authority: string) {
    this.h = h;
    this.authority = authority;
  }
  get headers(): RequestHeaders {
    const out: Headers = {};
    for (const name in this.h) if (name.charCodeAt(0) !== 0x3a) out[name] = this.h[name];
    out['host'] ??= this.authority;
    return out;
  }
}
