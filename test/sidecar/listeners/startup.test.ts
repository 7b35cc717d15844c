// Tests requests that reach a sidecar before its first config: they wait for it, or get a 503 that says why.
import http2 from 'node:http2';
import net from 'node:net';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { closeServer, cluster, domains, endpoint, listen, mesh, request, route, startApp, startPair, type Pair } from './harness.ts';

const SVC = 'outbound|80||web.default.svc.cluster.local';

let app: Awaited<ReturnType<typeof startApp>>;
let pair: Pair | undefined;

beforeAll(async () => {
  app = await startApp('web');
});
afterAll(async () => {
  await closeServer(app.server);
});
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

function webMesh(inbound: number) {
  return mesh([cluster(SVC, [endpoint(app.port, inbound)])], [{ name: 'web', domains: domains('web', 'default', '10.96.0.10', 80, true), routes: [route(SVC)] }]);
}

function h2Get(port: number, authority: string): Promise<{ status: number; reason: string; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':path': '/h2', ':authority': authority });
    let body = '';
    let status = 0;
    let reason = '';
    req.on('response', (h) => {
      status = Number(h[':status']);
      reason = String(h['x-skein-reason'] ?? '');
    });
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      session.close();
      resolve({ status, reason, body });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('requests before the first config', () => {
  it('wait for it (HTTP/1.1 and h2c) and then go where the config says, in order', async () => {
    const p = (pair = await startPair([app.port]));
    const early = [request(p.outbound, { host: 'web.default', path: '/first' }), h2Get(p.outbound, 'web.default'), request(p.outbound, { host: 'web', path: '/second' })];
    await new Promise((r) => setTimeout(r, 200));
    const m = webMesh(p.inbound);
    p.server.update(m);
    p.client.update(m);
    const [a, b, c] = await Promise.all(early);
    expect(a?.status).toBe(200);
    expect(a?.body).toBe('web GET /first host=web.default');
    expect(b?.status).toBe(200);
    expect(b?.body).toBe('web GET /h2 host=web.default');
    expect(c?.body).toBe('web GET /second host=web');
  });

  it('get 503 no_config naming the cause when none comes in time; the sidecar serves once it arrives', async () => {
    const p = (pair = await startPair([app.port], { configWaitMs: 150 }));
    const r = await request(p.outbound, { host: 'web.default', path: '/x' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('no_config');
    expect(r.body).toContain('no configuration from the control plane yet after waiting 150 ms');
    const h2 = await h2Get(p.outbound, 'web.default');
    expect(h2.status).toBe(503);
    expect(h2.reason).toBe('no_config');
    const m = webMesh(p.inbound);
    p.server.update(m);
    p.client.update(m);
    expect((await request(p.outbound, { host: 'web.default', path: '/y' })).status).toBe(200);
  });

  it('a config without this Host still answers the held request: 404 naming the host', async () => {
    const p = (pair = await startPair([app.port]));
    const held = request(p.outbound, { host: 'nothing.default', path: '/z' });
    await new Promise((r) => setTimeout(r, 100));
    p.client.update(webMesh(p.inbound));
    const r = await held;
    expect(r.status).toBe(404);
    expect(r.body).toContain('nothing.default');
  });
  it('serves a held request whose config came in time but was read only after the process was held past the wait', async () => {
    const p = (pair = await startPair([app.port], { configWaitMs: 1000 }));
    const m = webMesh(p.inbound);
    p.server.update(m);
    // A stand-in for the control plane's stream: the client sidecar takes its config when bytes come on a socket.
    const cp = net.createServer();
    const cpPort = await listen(cp);
    const feed = net.connect(cpPort, '127.0.0.1');
    feed.once('data', () => p.client.update(m));
    const [peer] = (await new Promise((r) => cp.once('connection', (s: net.Socket) => r([s])))) as [net.Socket];
    try {
      const held = request(p.outbound, { host: 'web.default', path: '/late' });
      // The config at 900 ms, the wait ends at about 1000 ms. Held from 850 ms to 1300 ms: when the process runs
      // again both are due; the config is in the socket, not yet read.
      setTimeout(() => peer.write('x'), 900);
      setTimeout(() => {
        const end = performance.now() + 450;
        while (performance.now() < end);
      }, 850);
      expect((await held).status).toBe(200);
    } finally {
      feed.destroy();
      peer.destroy();
      await closeServer(cp);
    }
  });
});
