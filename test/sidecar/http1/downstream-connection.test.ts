// Tests a downstream connection on a real socket whose responses end inside another llhttp parser's callback (as an upstream parser's would).
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { Writable } from 'node:stream';
import { DownstreamConnection } from '../../../sidecar/http1/downstream-connection.ts';
import type { DownstreamHost } from '../../../sidecar/http1/downstream-connection.ts';
import { BODY, CONTINUE, HttpParser, RESPONSE } from '../../../sidecar/http1/llhttp.ts';
import type { ParserEvents } from '../../../sidecar/http1/llhttp.ts';

/** Answers each request by parsing a canned upstream response with a second parser, writing to `conn` from its callbacks. */
class UpstreamLike implements DownstreamHost {
  readonly draining = false;
  readonly headersTimeoutMs = 1000;
  readonly errors: string[] = [];
  connect(conn: DownstreamConnection): void {
    conn.reply(400, 'bad_request', 'no tunnels here');
  }
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

/** Writes made on each served socket (socket.write calls), to see how many writes a response took. */
let writes = 0;

async function serve(host: DownstreamHost): Promise<number> {
  writes = 0;
  server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const write = socket.write;
    socket.write = function (this: net.Socket, ...args: unknown[]) {
      writes++;
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof socket.write;
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

  it('reads the next request on the connection after an upload whose reader lagged at its end', async () => {
    // The body goes to a slow writer (as to an upstream socket that is full): its buffer fills, the socket pauses,
    // and the body's last bytes may come in the read that ends it, when nothing asks for more body any more.
    let uploads = 0;
    const host: DownstreamHost = {
      draining: false,
      headersTimeoutMs: 5000,
      localError: () => {},
      connect: (conn: DownstreamConnection) => conn.reply(400, 'bad_request', 'no tunnels here'),
      request(conn: DownstreamConnection): void {
        const reply = (text: string): void => {
          conn.writeHead(200, { 'content-length': String(text.length) });
          conn.writeBody(Buffer.from(text));
          conn.endResponse();
        };
        if (conn.head.method !== 'POST') return reply(`got ${conn.head.url}`);
        const slow = new Writable({
          highWaterMark: 1024,
          write: (_chunk, _enc, cb) => setTimeout(cb, 10),
        });
        slow.on('finish', () => reply(`upload ${++uploads}`));
        conn.requestBody().pipe(slow);
      },
    };
    const port = await serve(host);
    // Chunked in 16 KiB pieces; the last three and the end come once the rest has backed up, in one read.
    const piece = Buffer.concat([Buffer.from('4000\r\n'), Buffer.alloc(0x4000, 120), Buffer.from('\r\n')]);
    const text = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      const timer = setTimeout(() => s.destroy(), 8000);
      s.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (got.endsWith('upload 1')) s.write('GET /after HTTP/1.1\r\nhost: x\r\n\r\n');
        if (got.endsWith('got /after')) s.end();
      });
      s.on('close', () => {
        clearTimeout(timer);
        resolve(got);
      });
      s.write(Buffer.concat([Buffer.from('POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n'), ...Array<Buffer>(40).fill(piece)]));
      setTimeout(() => s.write(Buffer.concat([piece, piece, piece, Buffer.from('0\r\n\r\n')])), 100);
    });
    expect(text).toContain('upload 1');
    expect(text).toContain('got /after');
  });

  /** Answers every request with Content-Length `body`, in the given slices: together in one tick, or one per tick. */
  function lengthHost(body: Buffer, slices: number[], sameTick: boolean): DownstreamHost {
    return {
      draining: false,
      headersTimeoutMs: 1000,
      localError: () => {},
      connect: (conn: DownstreamConnection) => conn.reply(400, 'bad_request', 'no tunnels here'),
      request(conn: DownstreamConnection): void {
        setImmediate(() => {
          conn.writeHead(200, { 'content-length': String(body.length) });
          let at = 0;
          const parts = slices.map((n) => body.subarray(at, (at += n)));
          if (sameTick) {
            for (const p of parts) conn.writeBody(p);
            conn.endResponse();
            return;
          }
          const next = (): void => {
            const p = parts.shift();
            if (p === undefined) conn.endResponse();
            else {
              conn.writeBody(p);
              setImmediate(next);
            }
          };
          setImmediate(next);
        });
      },
    };
  }

  async function fetchRaw(port: number, requests: number): Promise<string> {
    return await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        const text = Buffer.concat(chunks).toString('latin1');
        if ((text.match(/HTTP\/1\.1 200/g) ?? []).length === requests && text.endsWith('END')) s.end();
      });
      s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      s.write('GET /a HTTP/1.1\r\nhost: x\r\n\r\n'.repeat(requests));
    });
  }

  it('writes a small Content-Length response that ends in one tick as a single write', async () => {
    const body = Buffer.from('x'.repeat(1021) + 'END');
    const port = await serve(lengthHost(body, [body.length], true));
    const text = await fetchRaw(port, 2);
    expect(text).toBe(`HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n${body.toString()}`.repeat(2));
    expect(writes).toBe(2);
  });

  it('sends the head on the next tick when the body comes later, and large or repeated chunks in order', async () => {
    const body = Buffer.alloc(40_000, 'y');
    body.write('END', body.length - 3);
    for (const [slices, sameTick] of [
      [[100, 200, 39_700], false],
      [[20_000, 20_000], true],
      [[10, 39_990], true],
    ] as const) {
      const port = await serve(lengthHost(body, [...slices], sameTick));
      const text = await fetchRaw(port, 1);
      expect(text).toBe(`HTTP/1.1 200 OK\r\ncontent-length: 40000\r\n\r\n${body.toString('latin1')}`);
      await new Promise<void>((r) => server!.close(() => r()));
      server = undefined;
    }
  });
});
