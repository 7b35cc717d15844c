// Tests the request reader on llhttp: heads split anywhere, trailers dropped, the header byte limit, Expect and version.
import { describe, it, expect } from 'vitest';
import { HPE_OK, HPE_PAUSED, HPE_USER, HttpParser, REQUEST } from '../../../sidecar/http1/llhttp.ts';
import { RequestReader } from '../../../sidecar/http1/request-reader.ts';
import type { RequestSink } from '../../../sidecar/http1/request-reader.ts';

function setup(limit = 1024) {
  const events: string[] = [];
  const body: string[] = [];
  const sink: RequestSink = {
    headStarted: () => events.push('start'),
    headComplete: () => events.push('head'),
    bodyChunk: (c) => body.push(c.toString()),
    messageComplete: () => events.push('done'),
  };
  const reader = new RequestReader(sink, limit);
  const parser = new HttpParser(REQUEST, reader);
  reader.parser = parser;
  return { reader, parser, events, body };
}

describe('request reader', () => {
  it('joins names and values split across reads and keeps empty values', () => {
    const { reader, parser, events } = setup();
    const text = 'GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Long-Name: some value\r\n\r\n';
    for (let i = 0; i < text.length; i += 4) {
      const r = parser.execute(Buffer.from(text.slice(i, i + 4)));
      expect([HPE_OK, HPE_PAUSED]).toContain(r.code);
    }
    expect(events).toEqual(['start', 'head', 'done']);
    expect(reader.url).toBe('/a?b=1');
    expect(reader.rawHeaders).toEqual(['Host', 'x', 'X-Empty', '', 'X-Long-Name', 'some value']);
    expect(reader.method).toBe('GET');
    expect(reader.keepAlive).toBe(true);
    parser.free();
  });

  it('passes chunked body bytes on, drops trailers, and reads Expect and HTTP/1.0', () => {
    const { reader, parser, body } = setup();
    const r = parser.execute(
      Buffer.from('POST / HTTP/1.0\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n'),
    );
    expect(r.code).toBe(HPE_PAUSED);
    expect(body.join('')).toBe('abcde');
    expect(reader.rawHeaders).toEqual(['Expect', '100-continue', 'Transfer-Encoding', 'chunked']);
    expect(reader.expect).toBe('100-continue');
    expect(reader.http10).toBe(true);
    expect(reader.keepAlive).toBe(false);
    parser.free();
  });

  it('stops with a user error and the overflow flag past the header byte limit', () => {
    const { reader, parser } = setup(64);
    const r = parser.execute(Buffer.from(`GET / HTTP/1.1\r\nX-A: ${'a'.repeat(40)}\r\nX-B: ${'b'.repeat(40)}\r\n\r\n`));
    expect(r.code).toBe(HPE_USER);
    expect(reader.overflow).toBe(true);
    parser.free();
  });
});
