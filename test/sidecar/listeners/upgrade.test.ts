// Tests HTTP/1.1 Upgrade through a sidecar pair: WebSocket (ws and Node's own client), other protocols, refusals, mTLS and L7 authorization.
import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { tunnelledProtocol } from '../../../sidecar/listeners/upgrade.ts';
import { encodeProxyHeader } from '../../../sidecar/upstream/index.ts';
import { StaticSource, type TestCa, testCa } from '../tls/mesh-helper.ts';
import { closeServer, cluster, domains, endpoint, listen, mesh, request, route, startPair, type Pair } from './harness.ts';
import { apiMesh, metricValue, type Sidecar, startSidecar } from './mtls-harness.ts';

const SVC = 'outbound|80||chat.default.svc.cluster.local';
const WEB_ID = 'spiffe://mesh.test/ns/default/sa/web';
/** Generous: CI runs suites in parallel on two cores. */
const POLL = { timeout: 5000 };

/** An HTTP server with a WebSocket echo at /chat (it answers `echo:<message>` and reports the peer identity header). */
async function startChat(): Promise<{ server: http.Server; wss: WebSocketServer; port: number; closes: number[] }> {
  const server = http.createServer((req, res) => res.end(`plain ${req.url}`));
  const wss = new WebSocketServer({ server, path: '/chat' });
  const closes: number[] = [];
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${String(req.headers['x-skein-peer-identity'] ?? '')}`.trim());
    ws.on('message', (data) => ws.send(`echo:${String(data)}`));
    ws.on('close', (code) => closes.push(code));
  });
  const port = await listen(server);
  return { server, wss, port, closes };
}

/** A server that switches any request to a raw echo protocol, echoing bytes that came with the request head too. */
async function startRawEcho(): Promise<{ server: net.Server; port: number; heads: string[] }> {
  const heads: string[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      heads.push(buf.subarray(0, end).toString('latin1'));
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo/1\r\n\r\n');
      const early = buf.subarray(end + 4);
      if (early.length > 0) s.write(early);
      s.pipe(s);
    };
    s.on('data', onData);
    s.on('error', () => {});
  });
  const port = await listen(server);
  return { server, port, heads };
}

function chatMesh(appPort: number, inboundPort: number | undefined, extraDomains: string[] = []) {
  return mesh(
    [cluster(SVC, [endpoint(appPort, inboundPort)], { service: 'default/chat' })],
    [{ name: 'chat', domains: [...domains('chat', 'default', '10.96.0.30', 80, true), ...extraDomains], routes: [route(SVC)] }],
  );
}

/** Opens a `ws` client through the outbound port with Host `chat.default`; resolves with the first message. */
function openWs(outbound: number, path = '/chat'): Promise<{ ws: WebSocket; first: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://chat.default${path}`, { createConnection: () => net.connect(outbound, '127.0.0.1') });
    ws.once('message', (d) => resolve({ ws, first: String(d) }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode} ${String(res.headers['x-skein-reason'])}`)));
    ws.once('error', reject);
  });
}

/** A raw TCP client of a port and everything it has received so far. */
function rawClient(port: number): { s: net.Socket; got: () => string } {
  const s = net.connect(port, '127.0.0.1');
  let text = '';
  s.on('data', (c: Buffer) => (text += c.toString('latin1')));
  return { s, got: () => text };
}

function next(ws: WebSocket | globalThis.WebSocket): Promise<string> {
  return new Promise((resolve) => {
    if ('once' in ws) ws.once('message', (d) => resolve(String(d)));
    else ws.addEventListener('message', (e) => resolve(String(e.data)), { once: true });
  });
}

describe('tunnelledProtocol', () => {
  it('tunnels any Upgrade but h2c, which is served as plain HTTP/1.1', () => {
    expect(tunnelledProtocol(['Host', 'a', 'Upgrade', 'websocket'])).toBe('websocket');
    expect(tunnelledProtocol(['upgrade', 'h2c'])).toBeUndefined();
    expect(tunnelledProtocol(['UPGRADE', 'h2c, websocket'])).toBe('websocket');
    expect(tunnelledProtocol(['host', 'a'])).toBeUndefined();
    expect(tunnelledProtocol(['upgrade', ' , '])).toBeUndefined();
  });
});

describe('Upgrade through a plaintext sidecar pair', () => {
  let pair: Pair;
  let chat: Awaited<ReturnType<typeof startChat>>;
  let echo: Awaited<ReturnType<typeof startRawEcho>>;

  beforeAll(async () => {
    chat = await startChat();
    echo = await startRawEcho();
    pair = await startPair([chat.port, echo.port]);
  });
  afterAll(async () => {
    await pair.close();
    chat.wss.close();
    await closeServer(chat.server);
    await closeServer(echo.server);
  });

  it('carries a WebSocket session (ws client and server) both ways and closes it cleanly', async () => {
    const m = chatMesh(chat.port, pair.inbound);
    pair.client.update(m);
    pair.server.update(m);
    const { ws, first } = await openWs(pair.outbound);
    expect(first).toBe('hello');
    for (const text of ['one', 'two', 'x'.repeat(200_000)]) {
      const reply = next(ws);
      ws.send(text);
      expect(await reply).toBe(`echo:${text}`);
    }
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.close(4001, 'bye');
    expect(await closed).toBe(4001);
    await expect.poll(() => chat.closes.includes(4001), POLL).toBe(true);
    expect(await metricValue(pair.clientRegistry, 'skein_requests_total', { cluster: SVC, code: '101' })).toBe(1);
  });

  it("works with Node's own WebSocket client (undici), several at once on one sidecar", async () => {
    const m = chatMesh(chat.port, pair.inbound, [`127.0.0.1:${pair.outbound}`]);
    pair.client.update(m);
    pair.server.update(m);
    const clients = Array.from({ length: 5 }, () => new globalThis.WebSocket(`ws://127.0.0.1:${pair.outbound}/chat`));
    const firsts = await Promise.all(clients.map((c) => next(c)));
    expect(firsts).toEqual(Array(5).fill('hello'));
    const replies = await Promise.all(
      clients.map((c, i) => {
        const r = next(c);
        c.send(`n${i}`);
        return r;
      }),
    );
    expect(replies).toEqual(clients.map((_c, i) => `echo:n${i}`));
    await Promise.all(
      clients.map((c) => new Promise<void>((resolve) => {
        c.addEventListener('close', () => resolve(), { once: true });
        c.close(1000);
      })),
    );
  });

  it('tunnels other protocols too, with bytes the client sent right after the request head', async () => {
    const svc = 'outbound|80||raw.default.svc.cluster.local';
    const m = mesh([cluster(svc, [endpoint(echo.port, pair.inbound)])], [{ name: 'raw', domains: ['raw.default'], routes: [route(svc)] }]);
    pair.client.update(m);
    pair.server.update(m);
    const { s, got } = rawClient(pair.outbound);
    s.write('GET /x HTTP/1.1\r\nHost: raw.default\r\nConnection: Upgrade\r\nUpgrade: echo/1\r\nX-Trace: t1\r\n\r\nearly-bytes;');
    await expect.poll(got, POLL).toContain('early-bytes;');
    s.write('later-bytes');
    await expect.poll(got, POLL).toContain('early-bytes;later-bytes');
    expect(got()).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    const head = echo.heads.at(-1) ?? '';
    expect(head).toMatch(/^GET \/x HTTP\/1\.1\r\n/);
    expect(head.toLowerCase()).toContain('connection: upgrade');
    expect(head.toLowerCase()).toContain('upgrade: echo/1');
    expect(head.toLowerCase()).toContain('x-trace: t1');
    const closed = new Promise((r) => s.once('close', r));
    s.end();
    await closed;
  });

  it('relays an answer other than 101 as a normal response, and the connection goes on as HTTP/1.1', async () => {
    const m = chatMesh(chat.port, pair.inbound);
    pair.client.update(m);
    pair.server.update(m);
    const { s, got } = rawClient(pair.outbound);
    // /plain has no WebSocket handler: ws answers the upgrade with 400; then an ordinary request on the same connection.
    s.write('GET /plain HTTP/1.1\r\nHost: chat.default\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    await expect.poll(got, POLL).toMatch(/^HTTP\/1\.1 400 /);
    s.write('GET /after HTTP/1.1\r\nHost: chat.default\r\n\r\n');
    await expect.poll(got, POLL).toContain('plain /after');
    s.destroy();
  });

  it('answers 503 naming the cluster when it has no endpoint, and 503 when the endpoint refuses', async () => {
    pair.client.update(mesh([cluster(SVC, [])], [{ name: 'chat', domains: ['chat.default'], routes: [route(SVC)] }]));
    await expect(openWs(pair.outbound)).rejects.toThrow(/unexpected response 503 no_healthy_endpoint/);
    const closed = net.createServer();
    const deadPort = await listen(closed);
    await closeServer(closed);
    pair.client.update(chatMesh(deadPort, undefined));
    await expect(openWs(pair.outbound)).rejects.toThrow(/unexpected response 503 upstream_connect_error/);
    // The sidecar keeps serving ordinary requests.
    const m = chatMesh(chat.port, pair.inbound);
    pair.client.update(m);
    pair.server.update(m);
    expect((await request(pair.outbound, { host: 'chat.default', path: '/ok' })).body).toBe('plain /ok');
  });
});

describe('Upgrade answers that go wrong', () => {
  let pair: Pair;
  let odd: net.Server;
  let oddPort: number;
  const svc = 'outbound|80||odd.default.svc.cluster.local';

  beforeAll(async () => {
    // Misbehaves by path: garbage, a close without an answer, silence, an answer after 900 ms.
    odd = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d: Buffer) => {
        const path = d.toString('latin1').split(' ')[1];
        if (path === '/garbage') s.end('SSH-2.0-OpenSSH_9.2\r\n\r\n');
        else if (path === '/close') s.destroy();
        else if (path === '/late') setTimeout(() => s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'), 900);
      });
    });
    oddPort = await listen(odd);
    pair = await startPair([]);
  });
  afterAll(async () => {
    await pair.close();
    await closeServer(odd);
  });

  function oddMesh(timeoutMs?: number) {
    const r = route(svc);
    const action = timeoutMs === undefined ? r.action : { ...r.action, timeoutMs };
    return mesh([cluster(svc, [endpoint(oddPort)])], [{ name: 'odd', domains: ['odd.default'], routes: [{ ...r, action } as typeof r] }]);
  }

  async function upgradeTo(path: string): Promise<string> {
    const { s, got } = rawClient(pair.outbound);
    s.write(`GET ${path} HTTP/1.1\r\nHost: odd.default\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    await expect.poll(got, POLL).toMatch(/\r\n\r\n[\s\S]*\n/);
    s.destroy();
    return got();
  }

  it('an answer that is not HTTP is a 503 upstream_reset naming the parser error', async () => {
    pair.client.update(oddMesh());
    const out = await upgradeTo('/garbage');
    expect(out).toMatch(/^HTTP\/1\.1 503 /);
    expect(out).toContain('x-skein-reason: upstream_reset');
    expect(out).toMatch(/HPE_/);
  });

  it('a close without an answer is a 503 upstream_reset', async () => {
    pair.client.update(oddMesh());
    const out = await upgradeTo('/close');
    expect(out).toMatch(/^HTTP\/1\.1 503 /);
    expect(out).toContain('SKEIN_UPSTREAM_CLOSED');
  });

  it('an answer that came in time but was read only after the process was held past the route timeout opens the tunnel', async () => {
    pair.client.update(oddMesh(1000));
    const { s, got } = rawClient(pair.outbound);
    s.write('GET /late HTTP/1.1\r\nHost: odd.default\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    // The answer at 900 ms, the timeout at 1000 ms. Held from 850 ms to 1300 ms: when the process runs again both
    // are due; the answer is in the sidecar's upstream socket, not yet read.
    setTimeout(() => {
      const end = performance.now() + 450;
      while (performance.now() < end);
    }, 850);
    await expect.poll(got, POLL).toMatch(/\r\n\r\n/);
    s.destroy();
    expect(got()).toMatch(/^HTTP\/1\.1 101 /);
  });

  it('silence past the route timeout is a 504; a client that leaves first frees the endpoint', async () => {
    pair.client.update(oddMesh(200));
    const out = await upgradeTo('/silent');
    expect(out).toMatch(/^HTTP\/1\.1 504 /);
    expect(out).toContain('x-skein-reason: timeout');
    pair.client.update(oddMesh());
    const { s } = rawClient(pair.outbound);
    s.write('GET /silent HTTP/1.1\r\nHost: odd.default\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    const active = () => pair.client.clusterStats().find((c) => c.name === svc)?.endpoints[0]?.active;
    await expect.poll(active, POLL).toBe(1);
    s.destroy();
    await expect.poll(active, POLL).toBe(0);
  });
});

describe('Upgrade over mTLS with L7 authorization', () => {
  let ca: TestCa;
  let chat: Awaited<ReturnType<typeof startChat>>;
  const open: Sidecar[] = [];

  beforeAll(async () => {
    ca = await testCa('mesh.test');
    chat = await startChat();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    chat.wss.close();
    await closeServer(chat.server);
    await ca.close();
  });

  it('an allowed path opens (the app sees the verified identity); a denied path gets a readable 403', async () => {
    const server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [chat.port]);
    const client = await startSidecar(new StaticSource(await ca.leaf('default', 'web')));
    open.push(server, client);
    const policy = { deny: [], allow: [{ from: [{ principals: [WEB_ID] }], to: [{ paths: ['/chat'] }] }] };
    const base = apiMesh(chat.port, server.inbound, { authz: policy });
    server.plane.update(base);
    client.plane.update(base);
    const ws = await new Promise<{ ws: WebSocket; first: string }>((resolve, reject) => {
      const w = new WebSocket('ws://api.default/chat', { createConnection: () => net.connect(client.outbound, '127.0.0.1') });
      w.once('message', (d) => resolve({ ws: w, first: String(d) }));
      w.once('error', reject);
    });
    expect(ws.first).toBe(`hello ${WEB_ID}`);
    const reply = next(ws.ws);
    ws.ws.send('over mtls');
    expect(await reply).toBe('echo:over mtls');
    ws.ws.close();

    const denied = await new Promise<{ status: number; reason: string; body: string }>((resolve, reject) => {
      const w = new WebSocket('ws://api.default/admin', { createConnection: () => net.connect(client.outbound, '127.0.0.1') });
      w.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: String(res.headers['x-skein-reason']), body }));
      });
      w.once('open', () => reject(new Error('opened')));
      w.on('error', () => {});
    });
    expect(denied.status).toBe(403);
    expect(denied.reason).toBe('rbac_denied');
    expect(denied.body).toContain('/admin');
    expect(await metricValue(server.registry, 'skein_authz_denied_total', { service: 'default/api' })).toBe(1);
  });

  it('an upgrade the app declines ends the connection: a request pipelined after it never skips the checks', async () => {
    // Like many servers (Go's net/http, for one), this app answers an upgrade it does not take as a plain request and
    // reads the next request on the same connection. (node:http stops reading after it.)
    const conns = new Set<net.Socket>();
    const appServer = net.createServer((c) => {
      conns.add(c);
      let buf = '';
      c.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
          const path = buf.slice(0, end).split(' ')[1] ?? '';
          buf = buf.slice(end + 4);
          const body = `${path} peer=`;
          c.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        }
      });
      c.on('error', () => {});
    });
    const app = { server: appServer, port: await listen(appServer) };
    try {
      const server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port]);
      open.push(server);
      const policy = { deny: [], allow: [{ from: [], to: [{ paths: ['/open'] }] }] };
      server.plane.update(apiMesh(app.port, server.inbound, { mtlsMode: 'PERMISSIVE', authz: policy }));
      const { s, got } = rawClient(server.inbound);
      const closed = new Promise((r) => s.once('close', r));
      s.write(encodeProxyHeader('10.1.0.9', 0, '127.0.0.1', app.port));
      s.write('GET /open HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /secret HTTP/1.1\r\nHost: api\r\n\r\n');
      await closed;
      expect(got()).toMatch(/^HTTP\/1\.1 200 /);
      expect(got()).toContain('/open peer=');
      expect(got()).not.toContain('/secret');
      // Without the upgrade, the same pipelined pair is checked request by request: /secret is refused.
      const plain = rawClient(server.inbound);
      plain.s.write(encodeProxyHeader('10.1.0.9', 0, '127.0.0.1', app.port));
      plain.s.write('GET /open HTTP/1.1\r\nHost: api\r\n\r\nGET /secret HTTP/1.1\r\nHost: api\r\n\r\n');
      await expect.poll(plain.got, POLL).toContain('x-skein-reason: rbac_denied');
      plain.s.destroy();
    } finally {
      for (const c of conns) c.destroy();
      await closeServer(app.server);
    }
  });
});
