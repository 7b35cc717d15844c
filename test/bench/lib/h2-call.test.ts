// The simulated proxies' bare gRPC stream: message framing across DATA frames, with the reused join buffer.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H2Call } from './h2-call.ts';

function frame(body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

/** A message whose every byte depends on its seed and position, so a stale or shifted byte shows. */
function message(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (seed * 31 + i * 7 + (i >> 8)) & 0xff;
  return b;
}

describe('H2Call', () => {
  let server: http2.Http2Server;
  let address = '';
  /** What the server sends on a stream, by path, in these write sizes (cycled), one write per tick. */
  const toSend = new Map<string, Buffer>();
  let writeSizes: number[] = [];
  const received: Buffer[] = [];

  beforeAll(async () => {
    server = http2.createServer();
    server.on('stream', (stream, headers) => {
      const out = toSend.get(String(headers[':path'])) ?? Buffer.alloc(0);
      const body: Buffer[] = [];
      stream.on('data', (c: Buffer) => body.push(c));
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      let at = 0;
      let n = 0;
      const next = () => {
        if (at >= out.length) {
          received.push(Buffer.concat(body));
          stream.end();
          return;
        }
        const size = writeSizes[n++ % writeSizes.length] as number;
        stream.write(out.subarray(at, at + size));
        at += size;
        setImmediate(next);
      };
      // Wait for the client's one request message before answering.
      stream.once('data', () => setImmediate(next));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it('delivers each message intact, however the frames split them, with two calls taking turns, and writes the gRPC framing', async () => {
    // Per call: large messages (joined from many frames), small ones sharing frames with the next message's start,
    // and a length prefix split across frames. Two calls at once: one's leftover bytes must survive the other's join.
    const sizes = [200 * 1024, 150 * 1024, 10, 70_000, 3, 300 * 1024, 0, 20];
    writeSizes = [3, 16_384, 1, 50_000, 7, 9, 120_000, 2, 4096];
    const run = async (seed: number) => {
      const messages = sizes.map((size, i) => message(seed * 100 + i, size));
      const path = `/test.Echo/Stream${seed}`;
      toSend.set(path, Buffer.concat(messages.map(frame)));
      const seen: string[] = [];
      const call = new H2Call(
        address,
        path,
        (v) => Buffer.from(JSON.stringify(v)),
        // Keep the view itself, no copy: the bytes must stay valid while the 'data' listeners run.
        (bytes) => ({ bytes }),
      );
      const done = new Promise<void>((resolve, reject) => {
        call.on('end', resolve);
        call.on('error', reject);
      });
      call.on('data', (m: { bytes: Buffer }) => {
        const i = seen.length;
        seen.push(Buffer.compare(m.bytes, messages[i] ?? Buffer.alloc(0)) === 0 ? 'ok' : `message ${i} differs`);
      });
      call.write({ hello: seed });
      await done;
      call.cancel();
      return seen;
    };
    const [a, b] = await Promise.all([run(1), run(2)]);
    expect(a).toEqual(sizes.map(() => 'ok'));
    expect(b).toEqual(sizes.map(() => 'ok'));
    expect(received.map(String).sort()).toEqual([frame(Buffer.from('{"hello":1}')), frame(Buffer.from('{"hello":2}'))].map(String));
  });

  it('writes a message given in parts as one gRPC frame, the parts unchanged and reusable', async () => {
    // A SotW ACK: a small head per request, then the subscription's names, one buffer shared by every ACK.
    const shared = message(7, 60_000);
    const before = Buffer.from(shared);
    const heads = [Buffer.from('head-1'), Buffer.from('head-two')];
    const expected = Buffer.concat(heads.map((h) => frame(Buffer.concat([h, shared]))));
    const own = http2.createServer();
    const got = new Promise<Buffer>((resolve) => {
      own.on('stream', (stream) => {
        const chunks: Buffer[] = [];
        let n = 0;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.on('data', (c: Buffer) => {
          chunks.push(c);
          n += c.length;
          if (n >= expected.length) resolve(Buffer.concat(chunks));
        });
      });
    });
    await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
    const call = new H2Call(`127.0.0.1:${(own.address() as AddressInfo).port}`, '/test.Echo/Parts', (v) => [(v as { head: Buffer }).head, shared], (bytes) => ({ bytes }));
    call.on('error', () => undefined);
    for (const head of heads) call.write({ head });
    const body = await got;
    call.cancel();
    await new Promise((r) => own.close(r));
    expect(body.equals(expected)).toBe(true);
    expect(shared.equals(before)).toBe(true);
  });

  it('fails the call on a compressed message', async () => {
    const body = frame(message(9, 100_000));
    body[0] = 1;
    toSend.set('/test.Echo/Compressed', body);
    writeSizes = [40_000];
    const call = new H2Call(address, '/test.Echo/Compressed', () => Buffer.from('x'), (bytes) => ({ bytes }));
    const failed = new Promise<{ code: number }>((resolve) => call.on('error', resolve));
    call.write({});
    expect((await failed).code).toBe(13);
    call.cancel();
  });
});
