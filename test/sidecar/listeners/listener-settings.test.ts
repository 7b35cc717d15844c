// The outbound listener's settings from xDS through a real sidecar pair: stream_idle_timeout, max_request_headers_kb.
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster, closeServer, endpoint, mesh, request, route, startApp, startPair } from './harness.ts';
import type { Pair } from './harness.ts';
import type { MeshConfig } from '../../../sidecar/xds/model.ts';

const SLOW = 'outbound|80||slow.default.svc.cluster.local';

/** The harness's mesh with settings on the outbound listener. */
function withListener(m: MeshConfig, settings: { streamIdleTimeoutMs?: number; maxRequestHeadersKb?: number }): MeshConfig {
  const l = m.listeners.get('virtualOutbound');
  if (l?.kind !== 'http') throw new Error('no HTTP listener');
  return { ...m, listeners: new Map([['virtualOutbound', { ...l, ...settings }]]) };
}

/**
 * One HTTP/2 request to `slow` on its own session: `send` writes the body (default: none, the stream ends), and the
 * answer's status and x-skein-reason come back.
 */
async function h2Status(
  port: number,
  headers: http2.OutgoingHttpHeaders,
  send: (stream: http2.ClientHttp2Stream) => void = (s) => s.end(),
): Promise<[number, string | undefined]> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const stream = session.request({ ':path': '/quick', ':authority': 'slow', ...headers }, { endStream: false });
    send(stream);
    const head = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      stream.on('response', resolve);
      stream.on('error', reject);
    });
    stream.resume();
    return [Number(head[':status']), head['x-skein-reason'] as string | undefined];
  } finally {
    session.destroy();
  }
}

const slowMesh = (app: number, inbound: number): MeshConfig =>
  mesh([cluster(SLOW, [endpoint(app, inbound)])], [{ name: 'slow', domains: ['slow'], routes: [route(SLOW)] }]);

describe('the outbound listener\'s settings from xDS', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startApp>>;

  beforeAll(async () => {
    app = await startApp('slow'); // /slow answers after 2 s
    pair = await startPair([app.port], { maxKb: 8 });
    pair.client.update(withListener(slowMesh(app.port, pair.inbound), { streamIdleTimeoutMs: 300 }));
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app.server);
  });

  it('answers 408 stream_idle_timeout over HTTP/1.1 when the upstream says nothing for that long', async () => {
    const r = await request(pair.outbound, { host: 'slow', path: '/slow' });
    expect(r.status).toBe(408);
    expect(r.headers['x-skein-reason']).toBe('stream_idle_timeout');
    expect(r.body).toContain(`no response from ${SLOW} for 300 ms`);
    // A response that comes in time is untouched.
    expect((await request(pair.outbound, { host: 'slow', path: '/quick' })).status).toBe(200);
  });

  it('answers 408 to a client that stops sending the body it announced (HTTP/1.1 and HTTP/2), saying so', async () => {
    const socket = net.connect(pair.outbound, '127.0.0.1');
    const answer = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('close', () => resolve(text));
    });
    socket.write('POST /slow HTTP/1.1\r\nHost: slow\r\nContent-Length: 10\r\n\r\nab');
    const text = await answer; // the sidecar closes: the rest of the body can no longer be told from a next request
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(text).toContain('x-skein-reason: stream_idle_timeout');
    expect(text).toContain(`no request body bytes from the client and no response from ${SLOW} for 300 ms`);

    const stalled = await h2Status(pair.outbound, { ':method': 'POST', ':path': '/slow', 'content-length': '10' }, (stream) => stream.write('ab'));
    expect(stalled).toEqual([408, 'stream_idle_timeout']);
  });

  it('answers an HTTP/2 client the same 408', async () => {
    expect(await h2Status(pair.outbound, { ':path': '/slow' })).toEqual([408, 'stream_idle_timeout']);
  });

  it('takes the request head limit from the listener (max_request_headers_kb) over the sidecar\'s own', async () => {
    const big = { 'x-big': 'a'.repeat(12 * 1024) }; // over the sidecar's 8 KiB, under the app's 16 KiB
    const refused = await request(pair.outbound, { host: 'slow', path: '/quick', headers: big });
    expect(refused.status).toBe(431);
    expect(refused.headers['x-skein-reason']).toBe('headers_too_large');
    expect(await h2Status(pair.outbound, big)).toEqual([431, 'headers_too_large']); // the same limit over HTTP/2
    pair.client.update(withListener(slowMesh(app.port, pair.inbound), { streamIdleTimeoutMs: 300, maxRequestHeadersKb: 32 }));
    expect((await request(pair.outbound, { host: 'slow', path: '/quick', headers: big })).status).toBe(200);
    expect((await h2Status(pair.outbound, big))[0]).toBe(200);
  });
});
