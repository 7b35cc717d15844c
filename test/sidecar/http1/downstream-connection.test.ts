// Tests a downstream connection on a real socket whose responses end inside another llhttp parser's callback (as an upstream parser's would).
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { DownstreamConnection } from '../../../sidecar/http1/downstream-connection.ts';
import type { DownstreamHost } from '../../../sidecar/http1/downstream-connection.ts';
import { BODY, CONTINUE, HttpParser, RESPONSE } from '../../../sidecar/http1/llhttp.ts';
import type { ParserEvents } from '../../../sidecar/http1/llhttp.ts';

/** Answers each request by parsing a canned upstream response with a second parser, writing to `conn` from its callbacks. */
class UpstreamLike implements DownstreamHost {
  readonly draining = false;
  readonly headersTimeoutMs = 1000;
  readonly errors: string[] = [];
  request(conn: DownstreamConnection): void {
    const url = conn.head.url;
    setImmediate(() => {
      let status = 0;
      const events: ParserEvents = {
        onMessageBegin: () => CONTINUE,
        onUrl: () => CONTINUE,
        onStatus: () => CONTINUE,
        onHeaderField: () => CONTINUE,
        onHeaderValue: () => CONTINUE,
        onHeadersComplete: (code) => {
          status = code;
          conn.writeHead(status, { 'x-url': url });
          return BODY;
        },
        onBody: (chunk) => {
          conn.writeBody(Buffer.from(chunk));
          return CONTINUE;
        },
        onMessageComplete: () => {
          conn.endResponse(); // may go on to pipelined requests: must not re-enter llhttp
          return CONTINUE;
        },
      };
      const parser = new HttpParser(RESPONSE, events);
      parser.execute(Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${url.length.toString(16)}\r\n${url}\r\n0\r\n\r\n`));
      parser.free();
    });
  }
  localError(reason: string): void {
    this.errors.push(reason);
  }
}

let server: net.Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

async function serve(host: DownstreamHost): Promise<number> {
  server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.once('data', (first: Buffer) => {
      socket.pause();
      new DownstreamConnection(socket, host, 8192).start(first);
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  return (server!.address() as net.AddressInfo).port;
}

describe('downstream connection', () => {
  it('answers pipelined requests in order when each response ends inside another parser\'s callback', async () => {
    const port = await serve(new UpstreamLike());
    const text = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (c: Buffer) => {
        got += c.toString();
        if (got.includes('/three')) s.end();
      });
      s.on('close', () => resolve(got));
      s.write('GET /one HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\n\r\nGET /three HTTP/1.1\r\n\r\n');
    });
    const responses = text.split(/(?=HTTP\/1\.1 )/);
    expect(responses.map((r) => /x-url: (\S+)/.exec(r)?.[1])).toEqual(['/one', '/two', '/three']);
    // An upstream length unknown to the client side: re-chunked, body intact.
    expect(responses[1]).toContain('transfer-encoding: chunked\r\n\r\n4\r\n/two\r\n0\r\n\r\n');
  });
});
