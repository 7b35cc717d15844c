// Tests response heads: framing from request and response, header serialization, local replies.
import { describe, it, expect } from 'vitest';
import { FRAME_CHUNKED, FRAME_CLOSE, FRAME_LENGTH, FRAME_NONE, chooseFraming, localReplyText, responseHead } from '../../../sidecar/http1/response-head.ts';

describe('response heads', () => {
  it('chooses the body framing from status, length, method and client version', () => {
    expect(chooseFraming(200, true, false, false)).toBe(FRAME_LENGTH);
    expect(chooseFraming(200, false, false, false)).toBe(FRAME_CHUNKED);
    expect(chooseFraming(200, false, false, true)).toBe(FRAME_CLOSE);
    expect(chooseFraming(200, true, true, false)).toBe(FRAME_NONE);
    for (const status of [101, 204, 304]) expect(chooseFraming(status, false, false, true)).toBe(FRAME_NONE);
  });

  it('serializes the status line and headers once, repeated values as repeated lines', () => {
    const head = responseHead(200, { 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'], skipped: undefined, 'x-n': 3 }, FRAME_CHUNKED, 'close');
    expect(head).toBe(
      'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-n: 3\r\n' +
        'transfer-encoding: chunked\r\nconnection: close\r\n\r\n',
    );
    expect(responseHead(599, {}, FRAME_LENGTH, undefined)).toBe('HTTP/1.1 599 Unknown\r\n\r\n');
  });

  it('drops a Content-Length a 204 should not carry, and keeps a 304\'s (the length of what it stands for)', () => {
    expect(responseHead(204, { 'content-length': '5', 'x-a': '1' }, FRAME_NONE, undefined)).toBe('HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n');
    expect(responseHead(304, { 'content-length': '5' }, FRAME_NONE, undefined)).toBe('HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n');
  });

  it('writes local replies with a byte length, and without the body for HEAD', () => {
    const full = localReplyText(404, 'x-skein-reason', 'no_route', 'no route for host "é"', 'keep-alive', true);
    expect(full).toBe(
      'HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 23\r\n' +
        'x-skein-reason: no_route\r\nconnection: keep-alive\r\n\r\nno route for host "é"\n',
    );
    const head = localReplyText(404, 'x-skein-reason', 'no_route', 'no route for host "é"', undefined, false);
    expect(head).toMatch(/content-length: 23\r\nx-skein-reason: no_route\r\n\r\n$/);
  });
});
