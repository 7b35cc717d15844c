// Tests the llhttp response reader: header records, hop-by-hop removal, 1xx, HEAD, framing, pause and trailers.
import { describe, expect, it } from 'vitest';
import { BODY_PAUSED, COMPLETE, FAILED, NEED_MORE, ResponseReader } from '../../../sidecar/http1/response-reader.ts';
import type { ResponseHeaders, ResponseSink } from '../../../sidecar/http1/response-reader.ts';

class Sink implements ResponseSink {
  status = 0;
  heads = 0;
  headers: ResponseHeaders = {};
  body = '';
  accept = true;
  onHead(status: number, headers: ResponseHeaders): void {
    this.status = status;
    this.headers = headers;
    this.heads++;
  }
  onBody(chunk: Buffer): boolean {
    this.body += chunk.toString('latin1');
    return this.accept;
  }
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('ResponseReader', () => {
  it('builds the header record: lower-case names, repeats as arrays, hop-by-hop and Connection-listed ones dropped', () => {
    const r = new ResponseReader();
    const s = new Sink();
    r.begin(s, false);
    const out = r.feed(
      b(
        'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Trim: v  \r\nConnection: keep-alive, x-private\r\n' +
          'X-Private: p\r\nKeep-Alive: timeout=5, max=100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      ),
    );
    expect(out).toBe(COMPLETE);
    expect(s.status).toBe(200);
    expect(s.headers).toEqual({ 'set-cookie': ['a=1', 'b=2'], 'x-trim': 'v' });
    expect(s.body).toBe('abc');
    expect(r.keepAlive).toBe(true);
    expect(r.keepAliveHintMs).toBe(5000);
    expect(r.rest).toBeUndefined();
    r.free();
  });

  it('reads several responses in turn on one parser, split at any byte', () => {
    const r = new ResponseReader();
    for (const body of ['first', 'second!']) {
      const s = new Sink();
      r.begin(s, false);
      const text = b(`HTTP/1.1 201 Created\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      let out = NEED_MORE as number;
      for (let i = 0; i < text.length; i++) {
        out = r.feed(text.subarray(i, i + 1));
        if (i < text.length - 1) expect(out).toBe(NEED_MORE);
      }
      expect(out).toBe(COMPLETE);
      expect(s.status).toBe(201);
      expect(s.body).toBe(body);
    }
    r.free();
  });

  it('skips a 100 Continue and delivers the final response', () => {
    const r = new ResponseReader();
    const s = new Sink();
    r.begin(s, false);
    expect(r.feed(b('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'))).toBe(COMPLETE);
    expect(s.heads).toBe(1);
    expect(s.status).toBe(200);
    expect(s.body).toBe('ok');
    r.free();
  });

  it('reads no body for HEAD, 204 and 304 whatever the headers say', () => {
    const r = new ResponseReader();
    for (const [status, head] of [
      [200, true],
      [204, false],
      [304, false],
    ] as const) {
      const s = new Sink();
      r.begin(s, head);
      expect(r.feed(b(`HTTP/1.1 ${status} X\r\nContent-Length: 10\r\n\r\n`))).toBe(COMPLETE);
      expect(s.status).toBe(status);
      expect(s.body).toBe('');
    }
    r.free();
  });

  it('completes a response framed by the close on finish(), and says it is not kept alive', () => {
    const r = new ResponseReader();
    const s = new Sink();
    r.begin(s, false);
    expect(r.feed(b('HTTP/1.1 200 OK\r\n\r\nuntil'))).toBe(NEED_MORE);
    expect(r.feed(b(' close'))).toBe(NEED_MORE);
    expect(r.finish()).toBe(COMPLETE);
    expect(s.body).toBe('until close');
    expect(r.keepAlive).toBe(false);
    r.free();
  });

  it('fails a response cut short by the close, and reports nothing when none had started', () => {
    const r = new ResponseReader();
    r.begin(new Sink(), false);
    expect(r.finish()).toBe(NEED_MORE);
    r.begin(new Sink(), false);
    r.feed(b('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc'));
    expect(r.finish()).toBe(FAILED);
    expect(r.errorCode).toBe('HPE_INVALID_EOF_STATE');
    r.free();
  });

  it('says Connection: close and HTTP/1.0 responses are not reusable', () => {
    const r = new ResponseReader();
    r.begin(new Sink(), false);
    expect(r.feed(b('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'))).toBe(COMPLETE);
    expect(r.keepAlive).toBe(false);
    const r2 = new ResponseReader();
    r2.begin(new Sink(), false);
    expect(r2.feed(b('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'))).toBe(COMPLETE);
    expect(r2.keepAlive).toBe(false);
    r.free();
    r2.free();
  });

  it('pauses on a refused body chunk and goes on from the bytes it kept', () => {
    const r = new ResponseReader();
    const s = new Sink();
    s.accept = false;
    r.begin(s, false);
    expect(r.feed(b('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 9\r\n\r\n'))).toBe(BODY_PAUSED);
    expect(s.body).toBe('abc');
    expect(r.resumeBody()).toBe(BODY_PAUSED);
    expect(s.body).toBe('abcde');
    s.accept = true;
    expect(r.resumeBody()).toBe(COMPLETE);
    expect(r.trailers).toEqual({ 'x-sum': '9' });
    r.free();
  });

  it('delivers no empty chunk when resumed mid-body with nothing kept back', () => {
    const r = new ResponseReader();
    const s = new Sink();
    s.accept = false;
    let chunks = 0;
    const count: ResponseSink = { onHead: (st, h) => s.onHead(st, h), onBody: (c) => (chunks++, s.onBody(c)) };
    r.begin(count, false);
    expect(r.feed(b('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc'))).toBe(BODY_PAUSED);
    expect(r.resumeBody()).toBe(NEED_MORE);
    expect(chunks).toBe(1);
    s.accept = true;
    expect(r.feed(b('def'))).toBe(COMPLETE);
    expect([chunks, s.body]).toEqual([2, 'abcdef']);
    r.free();
  });

  it('completes after a pause on the last body bytes', () => {
    const r = new ResponseReader();
    const s = new Sink();
    s.accept = false;
    r.begin(s, false);
    expect(r.feed(b('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'))).toBe(BODY_PAUSED);
    expect(r.resumeBody()).toBe(COMPLETE);
    r.free();
  });

  it('keeps bytes after a complete response as rest (a server answering out of turn)', () => {
    const r = new ResponseReader();
    r.begin(new Sink(), false);
    expect(r.feed(b('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n'))).toBe(COMPLETE);
    expect(r.rest?.toString()).toBe('HTTP/1.1 200 OK\r\n');
    r.free();
  });

  it('names malformed responses, upgrades and oversized heads', () => {
    const r = new ResponseReader();
    r.begin(new Sink(), false);
    expect(r.feed(b('HTTX/1.1 200 OK\r\n\r\n'))).toBe(FAILED);
    expect(r.errorCode).toBe('HPE_INVALID_CONSTANT');
    const up = new ResponseReader();
    up.begin(new Sink(), false);
    expect(up.feed(b('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n'))).toBe(FAILED);
    expect(up.errorCode).toBe('HPE_UNEXPECTED_UPGRADE');
    const big = new ResponseReader();
    big.begin(new Sink(), false);
    expect(big.feed(b(`HTTP/1.1 200 OK\r\nX-Big: ${'x'.repeat(70_000)}\r\n\r\n`))).toBe(FAILED);
    expect(big.errorCode).toBe('HPE_HEADER_OVERFLOW');
    r.free();
    up.free();
    big.free();
  });

  it('refuses a status below 100 (llhttp reads any three digits; taken for a 1xx, the response never ended)', () => {
    for (const status of ['000', '099']) {
      const r = new ResponseReader();
      const s = new Sink();
      r.begin(s, false);
      expect(r.feed(b(`HTTP/1.1 ${status} Odd\r\ncontent-length: 2\r\n\r\nok`))).toBe(FAILED);
      expect(r.errorCode).toBe('HPE_INVALID_STATUS');
      expect(s.heads).toBe(0);
      r.free();
    }
  });

  it('refuses a transfer-coding other than chunked (its bytes would pass for the content), and accepts any spelling of chunked', () => {
    for (const te of ['gzip, chunked', 'chunked, gzip', 'deflate', 'identity']) {
      const r = new ResponseReader();
      const s = new Sink();
      r.begin(s, false);
      expect(r.feed(b(`HTTP/1.1 200 OK\r\nTransfer-Encoding: ${te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n`)), te).toBe(FAILED);
      expect(r.errorCode).toBe('HPE_INVALID_TRANSFER_ENCODING');
      expect(r.errorReason).toContain(te);
      expect(s.heads).toBe(0);
      r.free();
    }
    const ok = new ResponseReader();
    const s = new Sink();
    ok.begin(s, false);
    expect(ok.feed(b('HTTP/1.1 200 OK\r\nTransfer-Encoding:  CHUNKED \r\n\r\n3\r\nabc\r\n0\r\n\r\n'))).toBe(COMPLETE);
    expect(s.body).toBe('abc');
    ok.free();
  });
});
