// The forwarded request header list: one pass over rawHeaders (hop-by-hop, Host, Expect and Connection-named headers out).
import { describe, it, expect } from 'vitest';
import { headerListFromObject, headerListFromRaw, headerListValue } from '../../../sidecar/upstream/index.ts';
import type { RequestHeadInfo } from '../../../sidecar/upstream/index.ts';

describe('request header list', () => {
  it('lower-cases names, drops hop-by-hop, Host, Expect and what Connection names, and reports Host and body', () => {
    const info: RequestHeadInfo = { host: undefined, hasBody: false };
    const list = headerListFromRaw(
      ['Host', 'web.default', 'Connection', 'keep-alive, X-Secret', 'X-Secret', 's', 'Accept', '*/*', 'Transfer-Encoding', 'chunked',
        'Expect', '100-continue', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Cookie', 'a=1', 'cookie', 'b=2', 'Proxy-Authorization', 'x'],
      info,
    );
    expect(list).toEqual(['accept', '*/*', 'cookie', 'a=1', 'cookie', 'b=2']);
    expect(info).toEqual({ host: 'web.default', hasBody: true, manyHosts: false });
    expect(headerListValue(list, 'cookie')).toBe('a=1,b=2');
    expect(headerListValue(list, 'nope')).toBeUndefined();
  });

  it('notices a second Host header', () => {
    const info: RequestHeadInfo = { host: undefined, hasBody: false };
    headerListFromRaw(['Host', 'a', 'host', 'b'], info);
    expect(info).toEqual({ host: 'a', hasBody: false, manyHosts: true });
  });

  it('sees a body only for Transfer-Encoding or a Content-Length other than 0', () => {
    const info: RequestHeadInfo = { host: 'stale', hasBody: true };
    expect(headerListFromRaw(['content-length', '0'], info)).toEqual(['content-length', '0']);
    expect(info).toEqual({ host: undefined, hasBody: false, manyHosts: false });
    headerListFromRaw(['Content-Length', '12'], info);
    expect(info.hasBody).toBe(true);
  });

  it('builds the list of an HTTP/2 request without pseudo-headers, repeating multi-valued headers', () => {
    const list = headerListFromObject({ ':method': 'GET', ':path': '/', host: 'h', 'x-a': ['1', '2'], te: 'trailers', 'content-type': 'application/grpc' });
    expect(list).toEqual(['x-a', '1', 'x-a', '2', 'content-type', 'application/grpc']);
  });
});
