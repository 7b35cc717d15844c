// The route timeout after the process was held (a GC pause, a starved CPU): a response that came in time is served.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { timeoutInterceptor } from '../../../sidecar/upstream/index.ts';
import type { DispatchRequest } from '../../../sidecar/upstream/index.ts';

function request(timeoutMs: number): DispatchRequest {
  return { cluster: 'outbound|80||api.default.svc.cluster.local', method: 'GET', path: '/', authority: 'api', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs };
}

describe('route timeout after a stall', () => {
  let server: net.Server;
  let port = 0;
  const peers: net.Socket[] = [];

  beforeAll(async () => {
    server = net.createServer((s) => peers.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    for (const s of peers) s.destroy();
    await new Promise((r) => server.close(r));
  });

  it('ends a response whose bytes came before the timeout but were read only after the process was held past it', async () => {
    const upstream = net.connect(port, '127.0.0.1');
    await new Promise((r) => upstream.once('connect', r));
    await new Promise<void>((r) => (peers.length > 0 ? r() : server.once('connection', () => setImmediate(r))));
    const peer = peers[0]!;
    const outcome = await new Promise<string>((resolve) => {
      timeoutInterceptor((_req, h) => {
        h.onRequestStart({ pause: () => {}, resume: () => {}, abort: () => upstream.destroy() });
        // The whole response in one read: head and end.
        upstream.once('data', () => {
          h.onResponseStart(200, {});
          h.onResponseEnd(undefined);
        });
      })(request(1000), {
        onRequestStart: () => {},
        onResponseStart: () => {},
        onResponseData: () => true,
        onResponseEnd: () => resolve('end'),
        onResponseError: (e) => resolve(`error ${e.status}`),
      });
      // The peer answers at 900 ms, the timeout is at 1000 ms. Held from 850 ms to 1250 ms: when the process runs
      // again the answer and the timeout are both due; the answer is in the socket, not yet read.
      setTimeout(() => peer.write('x'), 900);
      setTimeout(() => {
        const end = performance.now() + 400;
        while (performance.now() < end);
      }, 850);
    });
    upstream.destroy();
    expect(outcome).toBe('end');
  }, 10_000);
});
