// The inbound L7 HTTP/1.1 path (a Service with a policy) against apps that send 1xx, get large heads, or drop idle connections.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { encodeProxyHeader } from '../../../sidecar/upstream/index.ts';
import { closeServer, cluster, domains, endpoint, listen, mesh, raw, request, route, startPair } from './harness.ts';
import type { Pair } from './harness.ts';
import { metricValue } from './mtls-harness.ts';

const HINTS = 'outbound|80||hints.default.svc.cluster.local';
const RACE = 'outbound|80||race.default.svc.cluster.local';
const BAD = 'outbound|80||bad.default.svc.cluster.local';
const INTERIM = 'outbound|80||interim.default.svc.cluster.local';
const ANYONE = { allow: [{ from: [], to: [] }], deny: [] };
const ONLY_GET = { allow: [{ from: [], to: [{ methods: ['GET'] }] }], deny: [] };

/** An app that answers every second request on a connection by closing it unanswered, as an idle timeout firing would. */
function raceApp(): { server: net.Server; connections: () => number } {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    let seen = 0;
    let buf = '';
    socket.on('data', (d) => {
      buf += String(d);
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        seen++;
        if (seen === 2) {
          socket.destroy();
          return;
        }
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
      }
    });
    socket.on('error', () => {});
  });
  return { server, connections: () => connections };
}

describe('the inbound L7 HTTP/1.1 path', () => {
  let pair: Pair;
  let hints: http.Server;
  let race: ReturnType<typeof raceApp>;
  let hintsPort: number;
  let bad: net.Server;
  let interim: net.Server;

  beforeAll(async () => {
    // Answers with a folded header line (obs-fold), which HTTP/1.1 parsers refuse in responses.
    bad = net.createServer((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nx-fold: a\r\n b\r\ncontent-length: 2\r\n\r\nok'));
      socket.on('error', () => {});
    });
    const badPort = await listen(bad);
    // Sends a 100 Continue nobody asked for, then the answer: its body is the request line it was sent.
    interim = net.createServer((socket) => {
      socket.once('data', (d) => {
        const line = String(d).split('\r\n')[0] ?? '';
        socket.write('HTTP/1.1 100 Continue\r\n\r\n');
        socket.end(`HTTP/1.1 200 OK\r\ncontent-length: ${line.length}\r\nconnection: close\r\n\r\n${line}`);
      });
      socket.on('error', () => {});
    });
    const interimPort = await listen(interim);
    hints = http.createServer({ maxHeaderSize: 65536 }, (req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      res.end(`cookie ${String(req.headers.cookie ?? '').length}`);
    });
    hintsPort = await listen(hints);
    race = raceApp();
    const racePort = await listen(race.server);
    pair = await startPair([hintsPort, racePort, badPort, interimPort]);
    const m = mesh(
      [
        cluster(HINTS, [endpoint(hintsPort, pair.inbound)], { authz: ONLY_GET }),
        cluster(RACE, [endpoint(racePort, pair.inbound)], { authz: ANYONE }),
        cluster(BAD, [endpoint(badPort, pair.inbound)], { authz: ANYONE }),
        cluster(INTERIM, [endpoint(interimPort, pair.inbound)], { authz: ANYONE }),
      ],
      [
        { name: 'bad', domains: domains('bad', 'default', '10.96.0.42', 80, true), routes: [route(BAD)] },
        { name: 'hints', domains: domains('hints', 'default', '10.96.0.40', 80, true), routes: [route(HINTS)] },
        { name: 'race', domains: domains('race', 'default', '10.96.0.41', 80, true), routes: [route(RACE)] },
        { name: 'interim', domains: domains('interim', 'default', '10.96.0.43', 80, true), routes: [route(INTERIM)] },
      ],
    );
    pair.client.update(m);
    pair.server.update(m);
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(hints);
    await closeServer(race.server);
    await closeServer(bad);
    await closeServer(interim);
  });

  it("relays the final answer after an app's unsolicited 100 Continue, and carries OPTIONS * to the app", async () => {
    const r = await request(pair.outbound, { host: 'interim.default', path: '/x' });
    expect([r.status, r.body]).toEqual([200, 'GET /x HTTP/1.1']);
    const out = await raw(pair.outbound, 'OPTIONS * HTTP/1.1\r\nhost: interim.default\r\nconnection: close\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(out).toContain('OPTIONS * HTTP/1.1');
  });

  it('names an app response that is not valid HTTP/1.1 as such (not as a closed connection)', async () => {
    const r = await request(pair.outbound, { host: 'bad.default' });
    expect(r.status).toBe(502);
    expect(r.headers['x-skein-reason']).toBe('upstream_protocol_error');
    expect(r.body).toContain("the app's response is not valid HTTP/1.1");
  });

  it('relays the final response after a 103 Early Hints, and takes request heads up to 60 KiB', async () => {
    const r = await request(pair.outbound, { host: 'hints.default', path: '/' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('cookie 0');
    const cookie = `a=${'x'.repeat(20_000)}`;
    const big = await request(pair.outbound, { host: 'hints.default', path: '/', headers: { cookie } });
    expect(big.status).toBe(200);
    expect(big.body).toBe(`cookie ${cookie.length}`);
  });

  it('counts the requests it answers under direction="inbound", its own answers also by reason', async () => {
    const inbound = { direction: 'inbound', cluster: `inbound|${hintsPort}||` };
    const before = await metricValue(pair.serverRegistry, 'skein_requests_total', { ...inbound, code: '200' });
    expect((await request(pair.outbound, { host: 'hints.default', path: '/count' })).status).toBe(200);
    expect((await request(pair.outbound, { host: 'hints.default', path: '/count', method: 'DELETE' })).status).toBe(403);
    expect(await metricValue(pair.serverRegistry, 'skein_requests_total', { ...inbound, code: '200' })).toBe(before + 1);
    expect(await metricValue(pair.serverRegistry, 'skein_requests_total', { ...inbound, code: '403' })).toBe(1);
    expect(await metricValue(pair.serverRegistry, 'skein_local_errors_total', { reason: 'rbac_denied' })).toBe(1);
    const hist = await pair.serverRegistry.getSingleMetric('skein_request_duration_seconds')?.get();
    expect(hist?.values.some((v) => v.labels.direction === 'inbound' && v.labels.cluster === inbound.cluster && (v as { metricName?: string }).metricName?.endsWith('_count') && v.value >= 2)).toBe(true);
  });

  it('answers a malformed request with a readable 400', async () => {
    const out = await raw(pair.inbound, Buffer.concat([encodeProxyHeader('127.0.0.1', 0, '127.0.0.1', hintsPort), Buffer.from('GET / HTTP/1.1\r\nhost: x\r\ncontent-length: nope\r\n\r\n')]));
    expect(out).toMatch(/^HTTP\/1\.1 400 /);
    expect(out).toContain('x-skein-reason: bad_request');
  });

  it('refuses a request transfer-coding other than chunked from a native peer with 501, as the outbound side does', async () => {
    const request = 'GET / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    const out = await raw(pair.inbound, Buffer.concat([encodeProxyHeader('127.0.0.1', 0, '127.0.0.1', hintsPort), Buffer.from(request)]));
    expect(out).toMatch(/^HTTP\/1\.1 501 /);
    expect(out).toContain('Transfer-Encoding "gzip, chunked" is not supported');
  });

  it('sends a bodiless request again when the app closed the kept-alive connection it went out on', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 4; i++) {
        const r = await request(pair.outbound, { host: 'race.default', path: `/n${i}`, agent });
        expect(r.status, `request ${i}: ${r.body}`).toBe(200);
      }
    } finally {
      agent.destroy();
    }
    expect(race.connections()).toBeGreaterThanOrEqual(2);
  });
});

describe('the inbound L7 path: slow and silent callers', () => {
  let pair: Pair;
  let app: http.Server;
  let appPort: number;

  beforeAll(async () => {
    app = http.createServer((_req, res) => res.end('ok'));
    appPort = await listen(app);
    pair = await startPair([appPort], { headersTimeoutMs: 300 });
    // A policy on methods: the inbound side reads each request (the L7 path).
    const m = mesh([cluster(HINTS, [endpoint(appPort, pair.inbound)], { authz: ONLY_GET })], [{ name: 'hints', domains: ['hints'], routes: [route(HINTS)] }]);
    pair.client.update(m);
    pair.server.update(m);
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app);
  });

  const viaPeer = (text: string) => Buffer.concat([encodeProxyHeader('127.0.0.1', 0, '127.0.0.1', appPort), Buffer.from(text)]);

  it('answers a request head that does not finish within the header timeout with 408, as the outbound side does', async () => {
    for (const partial of ['GET / HTTP/1.1\r\nhost: x\r\n', 'G']) {
      const t0 = performance.now();
      const out = await raw(pair.inbound, viaPeer(partial), 8000);
      expect(out).toMatch(/^HTTP\/1\.1 408 /);
      expect(out).toContain('x-skein-reason: header_timeout');
      expect(out).toContain('request headers not received within 300 ms');
      expect(performance.now() - t0).toBeLessThan(5000);
    }
  });

  it('closes a connection whose first bytes stop partway through what could be the HTTP/2 preface, or trickle in', async () => {
    const t0 = performance.now();
    expect(await raw(pair.inbound, viaPeer('PRI * HT'), 8000)).toBe('');
    expect(performance.now() - t0).toBeLessThan(5000);
    // One byte every 100 ms: the header timeout (300 ms) counts from the first, not from the last.
    const s = net.connect(pair.inbound, '127.0.0.1');
    s.on('error', () => {});
    const closed = new Promise<number>((resolve) => s.on('close', () => resolve(performance.now())));
    s.write(viaPeer('P'));
    const start = performance.now();
    const rest = 'RI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
    for (let i = 0; i < rest.length && !s.destroyed; i++) {
      await new Promise((r) => setTimeout(r, 100));
      if (!s.destroyed) s.write(rest[i] as string);
    }
    expect((await closed) - start).toBeLessThan(rest.length * 100);
  });

  it('sends nothing to the app that completes its head after the 408 (during the close linger)', async () => {
    const seen: string[] = [];
    const listener = (req: http.IncomingMessage) => seen.push(req.url ?? '');
    app.on('request', listener);
    try {
      // Half-open: the client keeps its side open after the sidecar's FIN, as a raw client may.
      const s = net.connect({ port: pair.inbound, host: '127.0.0.1', allowHalfOpen: true });
      s.on('error', () => {});
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.write(viaPeer('GET /late HTTP/1.1\r\nhost: x\r\n'));
      while (!text.includes('408')) await new Promise((r) => setTimeout(r, 20));
      s.write('\r\n'); // the head completes within the linger
      await new Promise((r) => setTimeout(r, 300));
      s.destroy();
      expect(seen).toEqual([]);
    } finally {
      app.off('request', listener);
    }
  });
});
