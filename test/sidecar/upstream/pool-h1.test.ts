// The HTTP/1.1 upstream path: connection reuse and counting, the one retry after a stale keep-alive, headers.
import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import { PassThrough } from 'node:stream';
import { Registry } from 'prom-client';
import { Cluster } from '../../../sidecar/upstream/index.ts';
import type { Connector, DispatchHandler, DispatchRequest, Headers } from '../../../sidecar/upstream/index.ts';
import net from 'node:net';
import type { LocalReplyError } from '../../../sidecar/listeners/errors.ts';
import { DataPlaneMetrics } from '../../../sidecar/telemetry/metrics.ts';
import { MAX_CONNECTIONS, MAX_PENDING } from '../../../sidecar/upstream/pool-h1.ts';
import { closeServer, listen } from '../listeners/harness.ts';

interface Outcome {
  status: number;
  headers: Headers;
  body: string;
  error: LocalReplyError | undefined;
}

function cluster(port: number, registry: Registry, connector?: Connector): Cluster {
  return new Cluster(
    { name: 'c', version: '1', kind: 'eds', lbPolicy: 'round-robin', connectTimeoutMs: 1000, protocol: 'http1', endpointsVersion: '1', endpoints: [{ address: '127.0.0.1', port, weight: 1, health: 'healthy' }] },
    '127.0.0.1',
    new DataPlaneMetrics(registry).cluster('outbound', 'c'),
    connector,
  );
}

async function send(c: Cluster, path: string, extra: Partial<DispatchRequest> = {}): Promise<Outcome> {
  // As a request from the network would, arrive in a later turn than the previous response's end.
  await new Promise((r) => setImmediate(r));
  const e = c.pick({ hash: undefined })!;
  return new Promise((resolve) => {
    const out: Outcome = { status: 0, headers: {}, body: '', error: undefined };
    const handler: DispatchHandler = {
      onRequestStart() {},
      onResponseStart(s, h) {
        out.status = s;
        out.headers = h;
      },
      onResponseData(chunk) {
        out.body += chunk.toString();
        return true;
      },
      onResponseEnd: () => resolve(out),
      onResponseError(err) {
        out.error = err;
        resolve(out);
      },
    };
    const req: DispatchRequest = { cluster: 'c', method: 'GET', path, authority: 'c.default', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs: 0, ...extra };
    e.pool.request(req, handler, false);
  });
}

async function metric(registry: Registry, name: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values.reduce((a, v) => a + v.value, 0) ?? 0;
}

describe('HTTP/1.1 upstream pool', () => {
  const servers: http.Server[] = [];

  it("does not count a new connection's set-up in the endpoint's latency (a cold start is not slowness)", async () => {
    const server = http.createServer((_req, res) => res.end('ok'));
    servers.push(server);
    const port = await listen(server);
    // Connections come up 300 ms late, as a slow TCP or TLS handshake would.
    const slowConnect: Connector = (t, _header, allowHalfOpen, onread) => {
      const socket = new net.Socket({ allowHalfOpen, onread });
      setTimeout(() => socket.connect(t.port, t.address), 300);
      return socket;
    };
    const c = cluster(port, new Registry(), slowConnect);
    const started = performance.now();
    expect((await send(c, '/')).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    const ep = c.pick({ hash: undefined })!;
    expect(ep.load.latencyMs).toBeLessThan(250);
    expect(ep.load.total).toBe(1);
  });
  const clusters: Cluster[] = [];
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.close(0)));
    await Promise.all(servers.splice(0).map(closeServer));
  });

  /** An app counting connections; `/stale` on a connection that already served a request drops it unanswered. */
  async function app(): Promise<{ port: number; connections: () => number }> {
    let conns = 0;
    const served = new WeakMap<object, number>();
    const s = http.createServer((req, res) => {
      const n = served.get(req.socket) ?? 0;
      served.set(req.socket, n + 1);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/stale' && n > 0) {
          req.socket.destroy();
          return;
        }
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.setHeader('x-seen', `${req.headers['host']} ${req.headers['x-multi']} ${req.headers['connection']}`);
        res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`);
      });
    });
    s.on('connection', () => conns++);
    servers.push(s);
    return { port: await listen(s), connections: () => conns };
  }

  it('reuses one kept-alive connection for sequential requests and counts the reused ones', async () => {
    const a = await app();
    const registry = new Registry();
    const c = cluster(a.port, registry);
    clusters.push(c);
    for (let i = 0; i < 3; i++) {
      const r = await send(c, `/r${i}`, { headers: ['x-multi', '1', 'x-multi', '2'] });
      expect(r.status).toBe(200);
      expect(r.body).toBe(`GET /r${i} `);
      expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2']);
      expect(r.headers['x-seen']).toBe('c.default 1, 2 keep-alive');
      // Hop-by-hop response headers are not handed on.
      expect(r.headers['connection']).toBeUndefined();
      expect(r.headers['keep-alive']).toBeUndefined();
    }
    expect(a.connections()).toBe(1);
    expect(await metric(registry, 'skein_upstream_requests_reused_total')).toBe(2);
    expect(await metric(registry, 'skein_upstream_connections')).toBe(1);
    expect(c.stat().endpoints[0]?.active).toBe(0);
  });

  it('keeps the connection of a request given up once its response began: the rest is read and dropped', async () => {
    let conns = 0;
    const big = Buffer.alloc(1024 * 1024, 'x');
    const s = http.createServer((req, res) => {
      if (req.url === '/late') setTimeout(() => res.end('late answer'), 150);
      else if (req.url === '/trickle') {
        res.write('first part, ');
        setTimeout(() => res.end('and the rest'), 150);
      }
      else if (req.url === '/huge') res.end(big);
      else if (req.url === '/never') return;
      else res.end('ok');
    });
    s.on('connection', () => conns++);
    servers.push(s);
    const port = await listen(s);
    const registry = new Registry();
    const c = cluster(port, registry);
    clusters.push(c);
    /** Sends `path` and gives it up `afterMs` later (0: just after the response starts). */
    const giveUp = (path: string, afterMs: number) =>
      new Promise<void>((resolve) => {
        const e = c.pick({ hash: undefined })!;
        let controller: { abort(): void } | undefined;
        const handler: DispatchHandler = {
          onRequestStart: (ctl) => {
            controller = ctl;
            if (afterMs > 0) setTimeout(() => (controller?.abort(), resolve()), afterMs);
          },
          onResponseStart: () => {
            // As a client leaving would: in a later event, not inside the upstream parser's callback.
            if (afterMs === 0) setImmediate(() => (controller?.abort(), resolve()));
          },
          onResponseData: () => true,
          onResponseEnd: () => resolve(),
          onResponseError: () => resolve(),
        };
        e.pool.request({ cluster: 'c', method: 'GET', path, authority: 'c', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs: 0 }, handler, false);
      });
    await giveUp('/trickle', 0);
    await new Promise((r) => setTimeout(r, 300)); // the rest arrives and is dropped
    expect((await send(c, '/next')).body).toBe('ok');
    expect(conns).toBe(1);
    // A response too large to be worth reading closes its connection instead.
    await giveUp('/huge', 0);
    await new Promise((r) => setTimeout(r, 100));
    expect((await send(c, '/after-huge')).body).toBe('ok');
    expect(conns).toBe(2);
    // So does one given up before the app answered at all (it may be hung: no slot is held for it).
    await giveUp('/late', 20);
    await new Promise((r) => setTimeout(r, 300));
    expect((await send(c, '/after-late')).body).toBe('ok');
    expect(conns).toBe(3);
    expect(c.stat().endpoints[0]?.active).toBe(0);
  });

  it('sends a bodiless request once more on a fresh connection when a kept-alive one was dropped under it', async () => {
    const a = await app();
    const c = cluster(a.port, new Registry());
    clusters.push(c);
    expect((await send(c, '/first')).status).toBe(200);
    const r = await send(c, '/stale');
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(200);
    expect(r.body).toBe('GET /stale ');
    expect(a.connections()).toBe(2);
  });

  it('does not resend a request with a body: the reset becomes 503 upstream_reset', async () => {
    const a = await app();
    const c = cluster(a.port, new Registry());
    clusters.push(c);
    expect((await send(c, '/first')).status).toBe(200);
    const body = new PassThrough();
    const pending = send(c, '/stale', { method: 'POST', body, headers: ['content-length', '5'] });
    body.end('hello');
    const r = await pending;
    expect(r.error?.status).toBe(503);
    expect(r.error?.reason).toBe('upstream_reset');
    expect(r.error?.message).toContain('ECONNRESET');
    expect(c.stat().endpoints[0]?.active).toBe(0);
  });

  it('does not resend a bodiless non-idempotent request (the peer may have died with it in hand), unless it has an Idempotency-Key', async () => {
    const a = await app();
    const c = cluster(a.port, new Registry());
    clusters.push(c);
    expect((await send(c, '/first')).status).toBe(200);
    const r = await send(c, '/stale', { method: 'POST' });
    expect([r.error?.status, r.error?.reason]).toEqual([503, 'upstream_reset']);
    expect(a.connections()).toBe(1);
    expect((await send(c, '/second')).status).toBe(200);
    const k = await send(c, '/stale', { method: 'POST', headers: ['Idempotency-Key', 'k1'] });
    expect(k.error).toBeUndefined();
    expect(k.body).toBe('POST /stale ');
    const d = await send(c, '/stale', { method: 'DELETE' });
    expect(d.error).toBeUndefined();
    expect(d.body).toBe('DELETE /stale ');
  });

  it('streams a request body and answers connection refused as upstream_connect_error', async () => {
    const a = await app();
    const c = cluster(a.port, new Registry());
    clusters.push(c);
    const body = new PassThrough();
    const pending = send(c, '/echo', { method: 'PUT', body });
    body.write('chunk1 ');
    body.end('chunk2');
    expect((await pending).body).toBe('PUT /echo chunk1 chunk2');

    const s = http.createServer();
    const port = await listen(s);
    await closeServer(s);
    const refused = cluster(port, new Registry());
    clusters.push(refused);
    const r = await send(refused, '/x');
    expect(r.error?.reason).toBe('upstream_connect_error');
    expect(r.error?.message).toContain(`ECONNREFUSED 127.0.0.1:${port}`);
  });
});

describe('HTTP/1.1 upstream pool limits (circuit breaking)', () => {
  it(`opens at most ${MAX_CONNECTIONS} connections, queues ${MAX_PENDING} more requests, and answers the rest 503 upstream_overflow`, async () => {
    const held: http.ServerResponse[] = [];
    let connections = 0;
    const server = http.createServer((_req, res) => held.push(res));
    server.on('connection', () => connections++);
    // A backlog above the 1024 connects that arrive at once (the default 511 would drop SYNs into connect timeouts).
    const port = await new Promise<number>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => resolve((server.address() as net.AddressInfo).port)));
    try {
      const c = cluster(port, new Registry());
      const e = c.pick({ hash: undefined })!;
      const outcomes: Promise<Outcome>[] = [];
      for (let i = 0; i < MAX_CONNECTIONS + MAX_PENDING + 1; i++) {
        outcomes.push(
          new Promise((resolve) => {
            const out: Outcome = { status: 0, headers: {}, body: '', error: undefined };
            e.pool.request(
              { cluster: 'c', method: 'GET', path: `/${i}`, authority: 'c.default', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs: 0 },
              {
                onRequestStart() {},
                onResponseStart: (s) => (out.status = s),
                onResponseData: () => true,
                onResponseEnd: () => resolve(out),
                onResponseError: (err) => {
                  out.error = err;
                  resolve(out);
                },
              },
              false,
            );
          }),
        );
      }
      // The one past both limits is answered at once.
      const last = await outcomes[outcomes.length - 1];
      expect(last?.error?.reason).toBe('upstream_overflow');
      expect(last?.error?.status).toBe(503);
      // Then every held response is let go as it comes; the queued requests follow on the freed connections.
      const release = setInterval(() => {
        for (const res of held.splice(0)) res.end('ok');
      }, 20);
      const all = await Promise.all(outcomes.slice(0, -1));
      clearInterval(release);
      expect(all.filter((o) => o.status !== 200)).toEqual([]);
      expect(connections).toBeLessThanOrEqual(MAX_CONNECTIONS);
    } finally {
      server.closeAllConnections();
      await closeServer(server);
    }
  }, 30_000);
});
