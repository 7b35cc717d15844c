// HTTP/2 rapid reset (CVE-2023-44487) at the outbound: streams opened and reset in one read start no upstream connection.
import net from 'node:net';
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster, domains, endpoint, H2_CLIENT_START, h2Frame, mesh, type Pair, route, startApp, startPair } from './harness.ts';

const SVC = 'outbound|80||web.default.svc.cluster.local';

/** HEADERS for GET / to `authority` (HPACK: static :method GET, :scheme http, :path /, literal :authority), END_STREAM. */
function headers(stream: number, authority: string): Buffer {
  const value = Buffer.from(authority, 'latin1');
  const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84, 0x41, value.length]), value]);
  return h2Frame(0x1, 0x5, stream, block);
}

/** RST_STREAM with CANCEL (0x8). */
function cancel(stream: number): Buffer {
  const code = Buffer.alloc(4);
  code.writeUInt32BE(0x8);
  return h2Frame(0x3, 0, stream, code);
}

/**
 * Sends `count` requests each followed at once by its RST_STREAM, all in one write. Resolves after `ms`, or when the
 * server closes first (`closedByServer`), with whether a GOAWAY came.
 */
function rapidReset(port: number, authority: string, count: number, ms = 500): Promise<{ closedByServer: boolean; goaway: boolean }> {
  const frames: Buffer[] = [H2_CLIENT_START];
  for (let i = 0; i < count; i++) frames.push(headers(1 + 2 * i, authority), cancel(1 + 2 * i));
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    let timedOut = false;
    const s = net.connect(port, '127.0.0.1', () => s.write(Buffer.concat(frames)));
    s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
    s.on('error', () => {});
    const t = setTimeout(() => {
      timedOut = true;
      s.destroy();
    }, ms);
    s.on('close', () => {
      clearTimeout(t);
      let goaway = false;
      for (let p = 0; p + 9 <= got.length; p += 9 + got.readUIntBE(p, 3)) if (got[p + 3] === 0x7) goaway = true;
      resolve({ closedByServer: !timedOut, goaway });
    });
  });
}

/** GET `path` of web.default over a new h2c session to the outbound; the response body. */
async function h2Get(port: number, path: string): Promise<string> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<string>((resolve, reject) => {
      const st = session.request({ ':path': path, ':authority': 'web.default' });
      let text = '';
      st.setEncoding('utf8');
      st.on('data', (c: string) => (text += c));
      st.on('end', () => resolve(text));
      st.on('error', reject);
    });
  } finally {
    session.close();
  }
}

describe('HTTP/2 rapid reset against an HTTP/1.1 Service', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startApp>>;

  beforeAll(async () => {
    app = await startApp('web');
    pair = await startPair([app.port]);
    pair.client.update(
      // Straight to the app (no peer sidecar), so the app counts every connection the outbound dials.
      mesh([cluster(SVC, [endpoint(app.port)])], [{ name: 'web', domains: domains('web', 'default', '10.96.0.10', 80, true), routes: [route(SVC)] }]),
    );
    pair.server.update(mesh([], []));
  });

  afterAll(async () => {
    await pair?.close();
    await new Promise((r) => app?.server.close(r));
  });

  it('starts no upstream connection for streams reset in the read that opened them, and keeps serving', async () => {
    const before = app.connections();
    expect(await rapidReset(pair.outbound, 'web.default', 500)).toEqual({ closedByServer: false, goaway: false });
    await rapidReset(pair.outbound, 'web.default', 500);
    // Give any connection the sidecar did start time to reach the app.
    await new Promise((r) => setTimeout(r, 300));
    expect(app.connections() - before).toBe(0);
    expect(await h2Get(pair.outbound, '/after')).toBe('web GET /after host=web.default');
  });

  it('ends a session that resets more than 1000 streams at once (nghttp2) without dialling for its streams, and serves the next', async () => {
    const before = app.connections();
    expect(await rapidReset(pair.outbound, 'web.default', 1500, 3000)).toEqual({ closedByServer: true, goaway: true });
    await new Promise((r) => setTimeout(r, 300));
    expect(app.connections() - before).toBe(0);
    expect(await h2Get(pair.outbound, '/next')).toBe('web GET /next host=web.default');
  });
});
