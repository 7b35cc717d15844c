// The request-header timeout after the sidecar was held (a GC pause, a starved CPU): a head completed meanwhile is served.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeServer, cluster, endpoint, mesh, route, startApp, startPair } from './harness.ts';
import type { Pair } from './harness.ts';

const OK = 'outbound|80||ok.default.svc.cluster.local';

describe('request-header timeout after a stall', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startApp>>;

  beforeAll(async () => {
    app = await startApp('ok');
    // 2 s: the sweep runs every second and times a head out two seconds after the first sweep that saw it begin.
    pair = await startPair([app.port], { headersTimeoutMs: 2000 });
    pair.client.update(mesh([cluster(OK, [endpoint(app.port, pair.inbound)])], [{ name: 'ok', domains: ['ok'], routes: [route(OK)] }]));
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app.server);
  });

  it('serves a head whose end came in time but was read only after the process was held past the timeout', async () => {
    const out = await new Promise<string>((resolve) => {
      const s = net.connect(pair.outbound, '127.0.0.1', () => {
        s.write('GET / HTTP/1.1\r\nHost: ok\r\n');
        // By 1050 ms a sweep has seen the head begin (at most 1 s after); it is due to time out 2 s after that.
        setTimeout(() => s.write('Connection: close\r\n\r\n'), 1100);
        // Held from 1080 ms to 3180 ms: past the head's end (1100) and past its timeout (at most 3000). When the
        // process runs again the send and the sweep are both due; the head's end is in the socket, not yet read.
        setTimeout(() => {
          const end = performance.now() + 2100;
          while (performance.now() < end);
        }, 1080);
      });
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('error', () => {});
      s.on('close', () => resolve(text));
    });
    expect(out).toMatch(/^HTTP\/1\.1 200/);
  }, 15_000);
});
