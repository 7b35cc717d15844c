import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import { cluster, closeServer, endpoint, freePort, h2Frame, H2_CLIENT_START, mesh, raw, request, route, startApp, startPair } from './harness.ts';
import type { Pair } from './harness.ts';

const OK = 'outbound|80||ok.default.svc.cluster.local';
const DOWN = 'outbound|80||down.default.svc.cluster.local';
const REFUSED = 'outbound|80||refused.default.svc.cluster.local';
const SLOW = 'outbound|80||slow.default.svc.cluster.local';
const REFUSED_H2 = 'outbound|9090||refused-grpc.default.svc.cluster.local';
const HALF = 'outbound|80||half.default.svc.cluster.local';
const WRONG_PORT = 'outbound|80||wrong-port.default.svc.cluster.local';

describe('bad input and upstream failures', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startApp>>;
  let refusedPort: number;

  beforeAll(async () => {
    app = await startApp('ok');
    refusedPort = await freePort();
    pair = await startPair([app.port], { headersTimeoutMs: 300, maxKb: 8 });
    pair.client.update(
      mesh(
        [
          cluster(OK, [endpoint(app.port, pair.inbound)]),
          cluster(DOWN, [endpoint(app.port, undefined, { health: 'unhealthy' }), endpoint(1, undefined, { health: 'unhealthy' })]),
          cluster(REFUSED, [endpoint(refusedPort)]),
          cluster(REFUSED_H2, [endpoint(refusedPort)], { protocol: 'http2' }),
          cluster(HALF, [endpoint(refusedPort), endpoint(app.port, pair.inbound)], { lbPolicy: 'p2c-ewma' }),
          cluster(SLOW, [endpoint(app.port)]),
          cluster(WRONG_PORT, [endpoint(app.port + 1, pair.inbound)]),
        ],
        [
          { name: 'ok', domains: ['ok', 'ok:80'], routes: [route(OK)] },
          { name: 'down', domains: ['down'], routes: [route(DOWN)] },
          { name: 'refused', domains: ['refused'], routes: [route(REFUSED)] },
          { name: 'refused-grpc', domains: ['refused-grpc'], routes: [route(REFUSED_H2)] },
          { name: 'half', domains: ['half'], routes: [route(HALF)] },
          { name: 'wrong-port', domains: ['wrong-port'], routes: [route(WRONG_PORT)] },
          { name: 'ghost', domains: ['ghost'], routes: [route('outbound|80||ghost.default.svc.cluster.local')] },
          {
            name: 'slow',
            domains: ['slow'],
            routes: [
              {
                ...route(SLOW),
                action: { kind: 'forward', targets: [{ cluster: SLOW, weight: 1 }], totalWeight: 1, timeoutMs: 200 },
              },
            ],
          },
          {
            name: 'only-api',
            domains: ['only-api'],
            routes: [{ ...route(OK), path: { kind: 'exact', value: '/api' } }],
          },
        ],
      ),
    );
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app.server);
  });

  it('answers a host with no route with 404 naming the host', async () => {
    const r = await request(pair.outbound, { host: 'nowhere.default:8080' });
    expect(r.status).toBe(404);
    expect(r.headers['x-skein-reason']).toBe('no_route');
    expect(r.body).toContain('nowhere.default:8080');
    // A huge Host is named, not sent back whole.
    const long = `${'x'.repeat(5000)}.default`;
    const big = await request(pair.outbound, { host: long });
    expect(big.status).toBe(404);
    expect(big.body.length).toBeLessThan(600);
    expect(big.body).toContain('xxxx...');
  });

  it('answers an invalid Host with 400 rather than 404, and routes OPTIONS * as the Service\'s "/"', async () => {
    const bad = await raw(pair.outbound, 'GET / HTTP/1.1\r\nHost: ok default\r\nConnection: close\r\n\r\n');
    expect(bad).toMatch(/^HTTP\/1\.1 400/);
    expect(bad).toContain('invalid Host "ok default"');
    const star = await raw(pair.outbound, 'OPTIONS * HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n');
    expect(star).toMatch(/^HTTP\/1\.1 200/);
    expect(star).toContain('ok OPTIONS * host=ok');
    // Through a proxy, `OPTIONS http://host` (no path) asks about the server: it goes on as `OPTIONS *`.
    const absolute = await raw(pair.outbound, 'OPTIONS http://ok HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n');
    expect(absolute).toContain('ok OPTIONS * host=ok');
    expect(await raw(pair.outbound, 'OPTIONS http://ok/ HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n')).toContain('ok OPTIONS / host=ok');
  });

  it('answers HTTP/2 CONNECT with 400 itself, blaming no endpoint', async () => {
    const session = http2.connect(`http://127.0.0.1:${pair.outbound}`);
    try {
      const stream = session.request({ ':method': 'CONNECT', ':authority': 'ok:80' });
      const { status, reason, body } = await new Promise<{ status: number; reason: unknown; body: string }>((resolve, reject) => {
        let head: http2.IncomingHttpHeaders = {};
        let text = '';
        stream.on('response', (h) => (head = h));
        stream.on('data', (c: Buffer) => (text += c.toString()));
        stream.on('end', () => resolve({ status: Number(head[':status']), reason: head['x-skein-reason'], body: text }));
        stream.on('error', reject);
      });
      expect(status).toBe(400);
      expect(reason).toBe('bad_request');
      expect(body).toContain('CONNECT over HTTP/2 is not supported');
    } finally {
      session.close();
    }
  });

  it('logs why node:http2 ended a flooding client\'s session (PING flood → GOAWAY), and serves on', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      const pings = Buffer.concat(Array.from({ length: 20_000 }, () => h2Frame(6, 0, 0, Buffer.alloc(8))));
      await new Promise<void>((resolve) => {
        const s = net.connect(pair.outbound, '127.0.0.1', () => {
          s.write(Buffer.concat([H2_CLIENT_START, pings]));
        });
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.resume();
      });
    } finally {
      spy.mockRestore();
    }
    expect(lines.join('')).toContain('HTTP/2 client session closed on a protocol error');
    expect((await request(pair.outbound, { host: 'ok' })).status).toBe(200);
  });

  it('closes an HTTP/2 connection whose client closed its side without a GOAWAY (no CLOSE-WAIT left behind)', async () => {
    const closedByServer = await new Promise<boolean>((resolve) => {
      const s = net.connect(pair.outbound, '127.0.0.1', () => {
        // The preface and an empty SETTINGS, as curl sends them, then FIN (curl exits without a GOAWAY).
        s.write(H2_CLIENT_START);
        setTimeout(() => s.end(), 100);
      });
      s.resume();
      s.on('error', () => resolve(true));
      // 'end' from the server means it closed its side too; a leaked session never ends it.
      s.on('end', () => resolve(true));
      setTimeout(() => resolve(false), 3000);
    });
    expect(closedByServer).toBe(true);
  });

  it('ends an HTTP/2 response from an HTTP/1.1 app on its last DATA frame, not in an empty frame sent later', async () => {
    // HPACK literal header fields without indexing (RFC 7541 §6.2.2), lengths under 127.
    const field = (n: string, v: string) => Buffer.concat([Buffer.from([0, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v)]);
    const block = Buffer.concat([field(':method', 'GET'), field(':scheme', 'http'), field(':path', '/h2-end'), field(':authority', 'ok')]);
    const ended = await new Promise<string>((resolve) => {
      const s = net.connect(pair.outbound, '127.0.0.1', () => s.write(H2_CLIENT_START));
      let buf = Buffer.alloc(0);
      let sent = false;
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9) {
          const len = buf.readUIntBE(0, 3);
          if (buf.length < 9 + len) break;
          const [type, flags] = [buf[3] as number, buf[4] as number];
          const stream = buf.readUInt32BE(5) & 0x7fffffff;
          buf = buf.subarray(9 + len);
          if (type === 4 && (flags & 1) === 0 && !sent) {
            // Acknowledge the server's SETTINGS and ask; then send nothing more (no WINDOW_UPDATE, no PING).
            sent = true;
            s.write(Buffer.concat([h2Frame(4, 1, 0, Buffer.alloc(0)), h2Frame(1, 5, 1, block)]));
          }
          if (stream === 1 && (type === 0 || type === 1) && (flags & 1) === 1) {
            s.destroy();
            resolve(type === 0 && len === 0 ? 'an empty DATA frame' : 'the last frame with content');
          }
        }
      });
      s.on('error', () => resolve('an error'));
      setTimeout(() => (s.destroy(), resolve('no end in 2 s')), 2000);
    });
    // A separate END_STREAM frame went out only when node asked for trailers, on the session's next I/O: a client
    // that waits for the end before writing again (haproxy's h2 backend) stalled ~200 ms per response.
    expect(ended).toBe('the last frame with content');
  });

  it('answers a path with no route with 404', async () => {
    const r = await request(pair.outbound, { host: 'only-api', path: '/other' });
    expect(r.status).toBe(404);
    expect(r.headers['x-skein-reason']).toBe('no_route');
  });

  it('answers no healthy endpoint with 503 naming the cluster (draining and unhealthy get nothing)', async () => {
    const r = await request(pair.outbound, { host: 'down' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('no_healthy_endpoint');
    expect(r.body).toContain(DOWN);
  });

  it('answers a route to an unknown cluster with 503 no_cluster', async () => {
    const r = await request(pair.outbound, { host: 'ghost' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('no_cluster');
  });

  it('answers connection refused with 503 naming the reason and target', async () => {
    const r = await request(pair.outbound, { host: 'refused' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('upstream_connect_error');
    expect(r.body).toContain(`upstream connect error: ECONNREFUSED 127.0.0.1:${refusedPort}`);
    // /clusters counts it against the endpoint.
    const ep = pair.client.clusterStats().find((c) => c.name === REFUSED)?.endpoints[0];
    expect(ep?.total).toBeGreaterThanOrEqual(1);
    expect(ep?.failed).toBe(ep?.total);
  });

  it('sends a request whose connection is refused to another endpoint, and then mostly avoids the refusing one', async () => {
    for (let i = 0; i < 30; i++) expect((await request(pair.outbound, { host: 'half', path: `/h${i}` })).status).toBe(200);
    const refusing = pair.client.clusterStats().find((c) => c.name === HALF)?.endpoints.find((e) => e.port === refusedPort);
    expect(refusing?.failed).toBeGreaterThanOrEqual(1);
    expect(refusing?.failed).toBeLessThanOrEqual(3); // a failure ejects it from P2C's choice (250 ms, doubling per failed probe)
  });

  it('names a refused connection the same way on an HTTP/2 (gRPC) cluster', async () => {
    const r = await request(pair.outbound, { host: 'refused-grpc' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('upstream_connect_error');
    expect(r.body).toContain(`upstream connect error: ECONNREFUSED 127.0.0.1:${refusedPort}`);
  });

  it('tells the caller when the peer sidecar has no such app port (a wrong targetPort or --app-port)', async () => {
    const r = await request(pair.outbound, { host: 'wrong-port' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('upstream_connect_error');
    expect(r.body).toContain(`destination port ${app.port + 1} is not one of the app ports of the pod behind this sidecar (${app.port})`);
  });

  it('answers an upstream reset with 503 upstream_reset', async () => {
    const r = await request(pair.outbound, { host: 'ok', path: '/reset' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('upstream_reset');
    expect(r.body).toContain('ECONNRESET');
  });

  it('answers a route timeout with 504', async () => {
    const r = await request(pair.outbound, { host: 'slow', path: '/slow' });
    expect(r.status).toBe(504);
    expect(r.headers['x-skein-reason']).toBe('timeout');
    expect(r.body).toContain('200 ms');
  });

  it('answers a missing Host with 400', async () => {
    const out = await raw(pair.outbound, 'GET / HTTP/1.0\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.[01] 400/);
    expect(out.toLowerCase()).toContain('x-skein-reason: bad_request');
  });

  it('answers garbage with 400 bad_request', async () => {
    const out = await raw(pair.outbound, Buffer.from([0x16, 0x03, 0x01, 0xff, 0x00, 0x13, 0x0d, 0x0a, 0x0d, 0x0a]));
    expect(out).toMatch(/^HTTP\/1\.1 400/);
    expect(out).toContain('x-skein-reason: bad_request');
    expect(out).toContain('bad request');
  });

  it('answers a request line naming another HTTP version (HTTP/2.0 in HTTP/1.1 syntax) with 505', async () => {
    const out = await raw(pair.outbound, 'GET / HTTP/2.0\r\nHost: ok\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 505 /);
    expect(out).toContain('HTTP/2.0 is not supported in this syntax');
  });

  it('answers a malformed request line with 400', async () => {
    const out = await raw(pair.outbound, 'GET /a b c HTTP/9.9\r\nHost: ok\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 400/);
    expect(out).toContain('x-skein-reason: bad_request');
  });

  it('answers headers over the limit with 431', async () => {
    const out = await raw(pair.outbound, `GET / HTTP/1.1\r\nHost: ok\r\nX-Big: ${'a'.repeat(16 * 1024)}\r\n\r\n`);
    expect(out).toMatch(/^HTTP\/1\.1 431/);
    expect(out).toContain('x-skein-reason: headers_too_large');
  });

  it('keeps a connection that has sent nothing yet past the header timeout (a spare one opened ahead of need)', async () => {
    const out = await new Promise<string>((resolve) => {
      const s = net.connect(pair.outbound, '127.0.0.1', () => {
        setTimeout(() => s.write('GET / HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n'), 700); // the timeout is 300 ms
      });
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('error', () => resolve(text));
      s.on('close', () => resolve(text));
    });
    expect(out).toMatch(/^HTTP\/1\.1 200/);
  });

  it('closes a connection it answered 400 or 408 even when the client never closes its side (after a 1 s linger)', async () => {
    for (const input of ['GET / HTTP/1.1\r\nHost: ok\r\nBad Header\r\n\r\n', 'GET / HTTP/1.1\r\n']) {
      const s = net.connect({ port: pair.outbound, host: '127.0.0.1', allowHalfOpen: true });
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('error', () => {});
      s.write(input);
      await new Promise((resolve) => s.once('end', resolve)); // the reply and the sidecar's FIN; our side stays open
      expect(text).toMatch(/^HTTP\/1\.1 (400|408) /);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // A socket the sidecar still held would read and drop these; a closed one answers the first with a reset, which
      // the second write reports.
      s.write('more');
      await new Promise((resolve) => setTimeout(resolve, 200));
      s.write('more');
      const outcome = await Promise.race([
        new Promise((resolve) => s.once('close', () => resolve('closed'))),
        new Promise((resolve) => setTimeout(() => resolve('still open'), 2000)),
      ]);
      s.destroy();
      expect([input, outcome]).toEqual([input, 'closed']);
    }
  });

  it('answers slow headers with 408 after the header timeout', async () => {
    const out = await raw(pair.outbound, 'GET / HTTP/1.1\r\nHost: ok\r\n', 5000);
    expect(out).toMatch(/^HTTP\/1\.1 408/);
    expect(out).toContain('x-skein-reason: header_timeout');
  });

  it('survives half requests, early closes and garbage on every listener', async () => {
    const inputs = [
      'GET / HTTP/1.1\r\nHo',
      'POST / HTTP/1.1\r\nHost: ok\r\nContent-Length: 100\r\n\r\nabc',
      'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04garbage-frames',
      'PRI * HTT',
      '\x00\x01\x02\x03',
      '\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c',
      '\r\n\r\n\x00\r\nQUIT\n\x99\x99\x00\x00',
    ];
    for (const port of [pair.outbound, pair.inbound, pair.server.ports().outbound]) {
      await Promise.all(
        inputs.map(
          (d) =>
            new Promise<void>((resolve) => {
              const s = net.connect(port, '127.0.0.1', () => {
                s.write(d);
                setTimeout(() => s.destroy(), 20);
              });
              s.on('error', () => {});
              s.on('close', () => resolve());
            }),
        ),
      );
    }
    // Still serving.
    const r = await request(pair.outbound, { host: 'ok', path: '/after' });
    expect(r.status).toBe(200);
  });

  it('aborts the upstream request when the client leaves early', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(pair.outbound, '127.0.0.1', () => {
        s.write('GET /slow HTTP/1.1\r\nHost: ok\r\n\r\n');
        setTimeout(() => s.destroy(), 50);
      });
      s.on('close', () => resolve());
    });
    // The sidecar sees the client leave in its own time (its side of the socket, then the upstream request's abort);
    // well before the app's answer 2 s after the request, which would also end it.
    await vi.waitFor(() => expect(pair.client.clusterStats().find((c) => c.name === OK)!.endpoints[0]!.active).toBe(0), { timeout: 1500 });
  });

  it('counts local errors by reason', async () => {
    const text = await pair.clientRegistry.metrics();
    for (const reason of ['no_route', 'no_healthy_endpoint', 'upstream_connect_error', 'upstream_reset', 'timeout', 'bad_request', 'headers_too_large']) {
      expect(text).toMatch(new RegExp(`skein_local_errors_total\\{reason="${reason}"\\} [1-9]`));
    }
  });
});
