// Tests the llhttp binding: request and response heads, chunked bodies, pipelining with pause, errors and upgrades.
import { describe, expect, it } from 'vitest';
import { BODY, CONTINUE, HPE_OK, HPE_PAUSED, HPE_PAUSED_UPGRADE, HttpParser, PAUSE, REQUEST, RESPONSE } from '../../../sidecar/http1/llhttp.ts';
import type { ParserEvents } from '../../../sidecar/http1/llhttp.ts';

interface Message {
  url: string;
  status: string;
  statusCode: number;
  headers: string[];
  body: string;
  keepAlive: boolean;
  upgrade: boolean;
  method: string;
}

function recorder(pauseOnComplete = false): { events: ParserEvents; messages: Message[]; parser?: HttpParser } {
  const messages: Message[] = [];
  const state: { events: ParserEvents; messages: Message[]; parser?: HttpParser } = { messages, events: undefined as unknown as ParserEvents };
  let m: Message;
  state.events = {
    onMessageBegin: () => {
      m = { url: '', status: '', statusCode: 0, headers: [], body: '', keepAlive: false, upgrade: false, method: '' };
      return CONTINUE;
    },
    onUrl: (t) => ((m.url += t), CONTINUE),
    onStatus: (t) => ((m.status += t), CONTINUE),
    onHeaderField: (t) => (m.headers.push(t), CONTINUE),
    onHeaderValue: (t) => (m.headers.push(t), CONTINUE),
    onHeadersComplete: (code, upgrade, keepAlive) => {
      m.statusCode = code;
      m.upgrade = upgrade;
      m.keepAlive = keepAlive;
      m.method = state.parser?.method() ?? '';
      return BODY;
    },
    onBody: (chunk) => ((m.body += chunk.toString()), CONTINUE),
    onMessageComplete: () => (messages.push(m), pauseOnComplete ? PAUSE : CONTINUE),
  };
  return state;
}

describe('llhttp binding', () => {
  it('parses a request head and a content-length body', () => {
    const r = recorder();
    const parser = new HttpParser(REQUEST, r.events);
    r.parser = parser;
    const result = parser.execute(Buffer.from('POST /a?b=1 HTTP/1.1\r\nHost: x.demo\r\nContent-Length: 5\r\n\r\nhello'));
    expect(result.code).toBe(HPE_OK);
    expect(r.messages).toEqual([
      expect.objectContaining({ url: '/a?b=1', method: 'POST', headers: ['Host', 'x.demo', 'Content-Length', '5'], body: 'hello', keepAlive: true }),
    ]);
    parser.free();
  });

  it('reads heads right after the wasm memory grew (a large input makes the binding allocate more)', () => {
    const r = recorder();
    const parser = new HttpParser(REQUEST, r.events);
    r.parser = parser;
    const body = 'b'.repeat(3 * 1024 * 1024);
    const big = Buffer.from(`POST /big HTTP/1.1\r\nHost: before.demo\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    expect(parser.execute(big).code).toBe(HPE_OK);
    expect(parser.execute(Buffer.from('GET /after HTTP/1.1\r\nHost: after.demo\r\n\r\n')).code).toBe(HPE_OK);
    expect(r.messages.map((m) => [m.url, m.headers[1], m.body.length])).toEqual([
      ['/big', 'before.demo', body.length],
      ['/after', 'after.demo', 0],
    ]);
    parser.free();
  });

  it('parses a chunked response split across reads', () => {
    const r = recorder();
    const parser = new HttpParser(RESPONSE, r.events);
    const text = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
    for (let i = 0; i < text.length; i += 7) expect(parser.execute(Buffer.from(text.slice(i, i + 7))).code).toBe(HPE_OK);
    expect(r.messages).toHaveLength(1);
    expect(r.messages[0]).toMatchObject({ statusCode: 200, status: 'OK', body: 'hello world' });
    parser.free();
  });

  it('pauses between pipelined requests and reports what it consumed', () => {
    const r = recorder(true);
    const parser = new HttpParser(REQUEST, r.events);
    const first = 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\n';
    const data = Buffer.from(`${first}GET /2 HTTP/1.1\r\nHost: a\r\n\r\n`);
    const result = parser.execute(data);
    expect(result.code).toBe(HPE_PAUSED);
    expect(result.consumed).toBe(first.length);
    parser.resume();
    expect(parser.execute(data.subarray(result.consumed)).code).toBe(HPE_PAUSED);
    expect(r.messages.map((m) => m.url)).toEqual(['/1', '/2']);
    parser.free();
  });

  it('names a malformed request', () => {
    const parser = new HttpParser(REQUEST, recorder().events);
    const result = parser.execute(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'));
    expect(result.code).not.toBe(HPE_OK);
    expect(result.reason).toMatch(/content-length|transfer-encoding/i);
    parser.free();
  });

  it('stops at an upgrade and leaves the tunnel bytes unconsumed', () => {
    const parser = new HttpParser(REQUEST, recorder().events);
    const head = 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    const result = parser.execute(Buffer.from(`${head}\x81\x00`));
    expect(result.code).toBe(HPE_PAUSED_UPGRADE);
    expect(result.consumed).toBe(head.length);
    parser.free();
  });
});
