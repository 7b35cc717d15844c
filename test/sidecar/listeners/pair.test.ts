import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { cluster, closeServer, domains, endpoint, listen, mesh, raw, request, route, startApp, startPair } from './harness.ts';
import type { Pair } from './harness.ts';

const WEB = 'outbound|80||web.default.svc.cluster.local';
const GRPC = 'outbound|50051||grpc.default.svc.cluster.local';
const CRAFTED = 'outbound|80||crafted.default.svc.cluster.local';

/** A raw HTTP/1.1 app: /trailers answers chunked and announces a trailer; /nocontent is a 204 that wrongly has a length and body. */
function craftedApp(): net.Server {
  return net.createServer((socket) => {
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (d) => {
      buf += String(d);
      while (buf.includes('\r\n\r\n')) {
        const head = buf.slice(0, buf.indexOf('\r\n\r\n'));
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        if (head.startsWith('GET /trailers '))
          socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n5\r\nhello\r\n0\r\nx-t: v\r\n\r\n');
        else if (head.startsWith('GET /dupheaders '))
          socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-type: text/html\r\nlocation: /a\r\nlocation: /b\r\ncontent-length: 2\r\n\r\nok');
        // Trailers HTTP/2 forbids (connection-specific fields): node refuses to send them.
        else if (head.startsWith('GET /badtrailers '))
          socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: connection\r\n\r\n5\r\nhello\r\n0\r\nconnection: close\r\nkeep-alive: 5\r\n\r\n');
        else socket.end('HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello');
      }
    });
  });
}

/** One h2c GET through the outbound port: status, body and trailers, or the error the stream ended with. */
function h2Get(port: number, authority: string, path: string): Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders | undefined; error?: string }> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const s = session.request({ ':path': path, ':authority': authority });
    let status = 0;
    let body = '';
    let trailers: http2.IncomingHttpHeaders | undefined;
    s.on('response', (h) => (status = Number(h[':status'])));
    s.on('trailers', (t) => (trailers = t));
    s.on('data', (c: Buffer) => (body += String(c)));
    s.on('end', () => {
      session.close();
      resolve({ status, body, trailers });
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      session.close();
      resolve({ status, body, trailers, error: e.code ?? e.message });
    });
    s.end();
  });
}

describe('outbound + inbound pair to real servers', () => {
  let pair: Pair;
  let web: Awaited<ReturnType<typeof startApp>>;
  let grpc: http2.Http2Server;
  let grpcPort: number;
  let grpcConnections = 0;
  let crafted: net.Server;

  beforeAll(async () => {
    web = await startApp('web');
    grpc = http2.createServer();
    grpc.on('connection', () => grpcConnections++);
    grpc.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
        stream.end(Buffer.concat([Buffer.from(`${headers[':path']}|${headers['te']}|`), ...chunks]));
      });
    });
    grpcPort = await listen(grpc);
    crafted = craftedApp();
    const craftedPort = await listen(crafted);
    pair = await startPair([web.port, grpcPort, craftedPort]);
    pair.client.update(
      mesh(
        [
          cluster(WEB, [endpoint(web.port, pair.inbound)]),
          cluster(GRPC, [endpoint(grpcPort, pair.inbound)], { protocol: 'http2' }),
          cluster(CRAFTED, [endpoint(craftedPort, pair.inbound)]),
        ],
        [
          { name: 'web', domains: domains('web', 'default', '10.96.0.10', 80, true), routes: [route(WEB)] },
          { name: 'grpc', domains: domains('grpc', 'default', '10.96.0.11', 50051, false), routes: [route(GRPC)] },
          { name: 'crafted', domains: domains('crafted', 'default', '10.96.0.12', 80, true), routes: [route(CRAFTED)] },
        ],
      ),
    );
    pair.server.update(mesh([], []));
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(web.server);
    await closeServer(grpc);
    await closeServer(crafted);
  });

  it('sends an HTTP/2 client the trailers an HTTP/1.1 app announced; an HTTP/1.1 client gets the body without them', async () => {
    const h2 = await h2Get(pair.outbound, 'crafted.default', '/trailers');
    expect(h2).toMatchObject({ status: 200, body: 'hello' });
    expect(h2.error).toBeUndefined();
    expect(h2.trailers?.['x-t']).toBe('v');
    const h1 = await request(pair.outbound, { host: 'crafted.default', path: '/trailers' });
    expect(h1.status).toBe(200);
    expect(h1.body).toBe('hello');
    expect(h1.headers['trailer']).toBeUndefined();
  });

  it('ends the stream without the trailers HTTP/2 forbids (connection-specific) instead of failing, and serves on', async () => {
    const bad = await h2Get(pair.outbound, 'crafted.default', '/badtrailers');
    expect(bad.error).toBeUndefined();
    expect([bad.status, bad.body]).toEqual([200, 'hello']);
    expect(bad.trailers?.['connection']).toBeUndefined();
    const next = await h2Get(pair.outbound, 'crafted.default', '/trailers');
    expect(next.trailers?.['x-t']).toBe('v');
  });

  it('answers an HTTP/2 client whose HTTP/1.1 app repeats a single-value header (content-type, location)', async () => {
    const r = await h2Get(pair.outbound, 'crafted.default', '/dupheaders');
    expect(r.error).toBeUndefined();
    expect([r.status, r.body]).toEqual([200, 'ok']);
    const next = await h2Get(pair.outbound, 'crafted.default', '/trailers');
    expect(next.status).toBe(200);
  });

  it('sends an HTTP/1.1 request that repeats a single-value header (User-Agent) to an HTTP/2 app with its first value', async () => {
    const out = await raw(pair.outbound, 'POST /svc/M HTTP/1.1\r\nhost: grpc.default:50051\r\nuser-agent: a\r\nuser-agent: b\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi');
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(out).toContain('/svc/M|undefined|hi');
  });

  it("drops a 204's Content-Length for HTTP/2 clients too (they reset a stream that has one)", async () => {
    const h2 = await h2Get(pair.outbound, 'crafted.default', '/nocontent');
    expect(h2.error).toBeUndefined();
    expect(h2.status).toBe(204);
    expect(h2.body).toBe('');
  });

  it('is ready once config is applied', () => {
    expect(pair.client.ready()).toBe(true);
  });

  it('carries HTTP/1.1 keep-alive requests through the pair, reusing upstream connections', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const before = web.connections();
    for (let i = 0; i < 10; i++) {
      const r = await request(pair.outbound, { host: 'web.default', path: `/n/${i}`, agent });
      expect(r.status).toBe(200);
      expect(r.body).toBe(`web GET /n/${i} host=web.default`);
      expect(r.headers['x-app']).toBe('web');
    }
    agent.destroy();
    expect(web.connections() - before).toBe(1);
    const stat = pair.client.clusterStats().find((c) => c.name === WEB)!;
    expect(stat.endpoints[0]!.connections).toBe(1);
  });

  it('forwards request bodies (large POST, chunked)', async () => {
    const body = Buffer.alloc(300_000, 'a');
    const r = await request(pair.outbound, { host: 'web', method: 'POST', path: '/echo', body });
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(body.length);
  });

  it('carries an h2c gRPC-style request (prior knowledge) with trailers through the pair', async () => {
    const session = http2.connect(`http://127.0.0.1:${pair.outbound}`);
    try {
      const result = await new Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: string }>(
        (resolve, reject) => {
          const stream = session.request({
            ':method': 'POST',
            ':path': '/demo.Echo/Say',
            ':authority': 'grpc.default:50051',
            'content-type': 'application/grpc',
            te: 'trailers',
          });
          let headers: http2.IncomingHttpHeaders = {};
          let trailers: http2.IncomingHttpHeaders = {};
          const chunks: Buffer[] = [];
          stream.on('response', (h) => (headers = h));
          stream.on('trailers', (t) => (trailers = t));
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('end', () => resolve({ headers, trailers, body: Buffer.concat(chunks).toString() }));
          stream.on('error', reject);
          stream.end(Buffer.from('hello'));
        },
      );
      expect(result.headers[':status']).toBe(200);
      expect(result.body).toBe('/demo.Echo/Say|trailers|hello');
      expect(result.trailers['grpc-status']).toBe('0');
      expect(result.trailers['grpc-message']).toBe('ok');
    } finally {
      session.close();
    }
    expect(grpcConnections).toBe(1);
  });

  it('serves plain HTTP/2 requests to an HTTP/1.1 upstream', async () => {
    const session = http2.connect(`http://127.0.0.1:${pair.outbound}`);
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const s = session.request({ ':path': '/h2', ':authority': 'web.default.svc.cluster.local' });
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => resolve(Buffer.concat(chunks).toString()));
        s.on('error', reject);
        s.end();
      });
      expect(body).toBe('web GET /h2 host=web.default.svc.cluster.local');
    } finally {
      session.close();
    }
  });

  it.each([
    'web',
    'web:80',
    'web.default',
    'web.default:80',
    'web.default.svc',
    'web.default.svc:80',
    'web.default.svc.cluster.local',
    'web.default.svc.cluster.local:80',
    '10.96.0.10',
    '10.96.0.10:80',
    'WEB.DEFAULT',
  ])('routes Host form %s', async (host) => {
    const r = await request(pair.outbound, { host, path: '/form' });
    expect(r.status).toBe(200);
    expect(r.body).toBe(`web GET /form host=${host}`);
  });

  it('routes absolute-form request URLs (as sent to an HTTP proxy)', async () => {
    const r = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: pair.outbound, path: 'http://web.default/abs?x=1', agent: false, headers: { host: 'ignored' } }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      req.end();
    });
    expect(r).toBe('web GET /abs?x=1 host=web.default');
  });

  it('counts requests in skein_requests_total and the duration histogram', async () => {
    await request(pair.outbound, { host: 'web', path: '/m' });
    const text = await pair.clientRegistry.metrics();
    expect(text).toMatch(new RegExp(`skein_requests_total\\{direction="outbound",cluster="${WEB.replace(/\|/g, '\\|')}",code="200"\\} \\d+`));
    expect(text).toContain('skein_request_duration_seconds_bucket');
    expect(text).toMatch(/skein_upstream_connections\{cluster="outbound\|80\|\|web[^"]*"\} 1/);
  });
});
