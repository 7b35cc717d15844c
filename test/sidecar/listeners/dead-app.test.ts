// A live sidecar in front of a dead app (nothing listening on the app port): a readable 503, and a retry elsewhere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeServer, cluster, domains, endpoint, freePort, mesh, request, route, startApp, startPair } from './harness.ts';
import type { Pair } from './harness.ts';
import * as grpc from '@grpc/grpc-js';
import http from 'node:http';
import net from 'node:net';
import { encodeProxyHeader } from '../../../sidecar/upstream/index.ts';
import { ECHO_SERVICE, startGrpcEcho, unary } from './grpc-helpers.ts';

const SVC = 'outbound|80||mixed.default.svc.cluster.local';
const DEAD = 'outbound|80||dead.default.svc.cluster.local';
const DEAD_GRPC = 'outbound|50051||deadgrpc.default.svc.cluster.local';

describe('an endpoint whose sidecar is up but whose app is not', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startApp>>;
  let deadPort: number;

  beforeAll(async () => {
    app = await startApp('live');
    deadPort = await freePort();
    pair = await startPair([app.port, deadPort]);
    const m = mesh(
      [
        cluster(SVC, [endpoint(deadPort, pair.inbound), endpoint(app.port, pair.inbound)], { lbPolicy: 'round-robin' }),
        cluster(DEAD, [endpoint(deadPort, pair.inbound)]),
        cluster(DEAD_GRPC, [endpoint(deadPort, pair.inbound)], { protocol: 'http2' }),
      ],
      [
        { name: 'mixed', domains: domains('mixed', 'default', '10.96.0.50', 80, true), routes: [route(SVC)] },
        { name: 'dead', domains: domains('dead', 'default', '10.96.0.51', 80, true), routes: [route(DEAD)] },
        { name: 'deadgrpc', domains: domains('deadgrpc', 'default', '10.96.0.52', 50051, false), routes: [route(DEAD_GRPC)] },
      ],
    );
    pair.client.update(m);
    pair.server.update(m);
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app.server);
  });

  it('answers 503 upstream_connect_error naming the app port, not a reset blamed on the peer sidecar', async () => {
    const r = await request(pair.outbound, { host: 'dead.default', path: '/x' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('upstream_connect_error');
    expect(r.body).toContain(`ECONNREFUSED app port ${deadPort}`);
    // The server-side sidecar counts the answers it made itself.
    const counted = (await pair.serverRegistry.getSingleMetric('skein_local_errors_total')?.get())?.values.find((v) => v.labels.reason === 'upstream_connect_error');
    expect(counted?.value).toBeGreaterThan(0);
  });

  /** A caller that sends its PROXY header at once and its request 100 ms later; `hold` stalls this process meanwhile. */
  const lateRequest = (hold?: () => void): Promise<string> =>
    new Promise<string>((resolve) => {
      const s = net.connect(pair.inbound, '127.0.0.1', () => {
        s.write(encodeProxyHeader('127.0.0.1', 0, '127.0.0.1', deadPort));
        setTimeout(() => s.write('GET /late HTTP/1.1\r\nhost: dead\r\n\r\n'), 100);
        hold?.();
      });
      let text = '';
      s.on('data', (d) => (text += d));
      s.on('error', () => {});
      s.on('close', () => resolve(text));
    });

  it('closes an opaque TCP caller (it has no way to say why) and counts it where it happened', async () => {
    const metric = async () =>
      (await pair.serverRegistry.getSingleMetric('skein_local_errors_total')?.get())?.values.find((v) => v.labels.reason === 'upstream_connect_error')?.value ?? 0;
    const before = await metric();
    const closed = await new Promise<string>((resolve) => {
      const s = net.connect(pair.inbound, '127.0.0.1', () => s.write(Buffer.concat([encodeProxyHeader('127.0.0.1', 0, '127.0.0.1', deadPort), Buffer.from('*1\r\n$4\r\nPING\r\n')])));
      let text = '';
      s.on('data', (d) => (text += d));
      s.on('error', () => {});
      s.on('close', () => resolve(text));
    });
    expect(closed).toBe('');
    expect(await metric()).toBe(before + 1);
  });

  it('answers so even when the refusal comes before the caller has sent its request', async () => {
    const out = await lateRequest();
    expect(out).toMatch(/^HTTP\/1\.1 503 /);
    expect(out).toContain('x-skein-reason: upstream_connect_error');
  });

  it("answers so when the caller's request came while the sidecar was held past its wait for it (timers run before I/O)", async () => {
    // The process held (a GC pause, a starved CPU) past both the caller's send and the sidecar's 250 ms wait: both
    // timers are due at once, the send runs first, and its bytes sit in the sidecar's socket unread.
    const out = await lateRequest(() =>
      setTimeout(() => {
        const end = performance.now() + 400;
        while (performance.now() < end);
      }, 50),
    );
    expect(out).toMatch(/^HTTP\/1\.1 503 /);
    expect(out).toContain('x-skein-reason: upstream_connect_error');
  });

  it("answers so when a silent caller's first bytes came while the sidecar was held past its 5 s wait for them", async () => {
    // The PROXY header and request at 4900 ms, the inbound's wait for a caller's first bytes ends at about 5000 ms.
    // Held from 4850 ms to 5300 ms: when the process runs again both are due; the bytes are in the socket, unread.
    const out = await new Promise<string>((resolve) => {
      const s = net.connect(pair.inbound, '127.0.0.1', () => {
        setTimeout(() => s.write(Buffer.concat([encodeProxyHeader('127.0.0.1', 0, '127.0.0.1', deadPort), Buffer.from('GET /late HTTP/1.1\r\nhost: dead\r\n\r\n')])), 4900);
        setTimeout(() => {
          const end = performance.now() + 450;
          while (performance.now() < end);
        }, 4850);
      });
      let text = '';
      s.on('data', (d) => (text += d));
      s.on('error', () => {});
      s.on('close', () => resolve(text));
    });
    expect(out).toMatch(/^HTTP\/1\.1 503 /);
    expect(out).toContain('x-skein-reason: upstream_connect_error');
  }, 15_000);

  it('answers a gRPC call UNAVAILABLE with the same reason, and recovers when the app comes back', async () => {
    const c = new grpc.Client(`127.0.0.1:${pair.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'deadgrpc.default:50051' });
    try {
      for (let i = 0; i < 2; i++) {
        const r = await unary(c, '/demo.Echo/Say', 'hi');
        expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
        expect(r.error?.details).toContain(`ECONNREFUSED app port ${deadPort}`);
        expect(r.error?.metadata.get('x-skein-reason')).toEqual(['upstream_connect_error']);
      }
      const server = new grpc.Server();
      server.addService(ECHO_SERVICE, { Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) });
      await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${deadPort}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
      try {
        expect(await unary(c, '/demo.Echo/Say', 'back')).toEqual({ reply: 'back' });
      } finally {
        server.forceShutdown();
      }
    } finally {
      c.close();
    }
  });

  it('sends a request with a small body to another endpoint too, also when the peer answers before the body ends', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await request(pair.outbound, { host: 'mixed.default', path: `/p${i}`, method: 'POST', body: `payload ${i}` });
      expect(r.status, r.body).toBe(200);
      expect(r.body).toBe(`payload ${i}`);
    }
    // Chunked, the second half 150 ms after the first: the dead endpoint's 503 comes in between.
    const chunked = (i: number): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: pair.outbound, path: `/c${i}`, method: 'POST', headers: { host: 'mixed.default' }, agent: false }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.write(`first ${i} `);
        setTimeout(() => req.end(`second ${i}`), 150);
      });
    for (let i = 0; i < 4; i++) expect(await chunked(i)).toEqual({ status: 200, body: `first ${i} second ${i}` });
  });

  it('does not keep a body over 64 KiB: its request gets the peer\'s 503, never a truncated retry', async () => {
    const big = 'x'.repeat(64 * 1024 + 1);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await request(pair.outbound, { host: 'mixed.default', path: `/big${i}`, method: 'POST', body: big });
      statuses.push(r.status);
      if (r.status === 200) expect(r.body.length).toBe(big.length);
      else expect(r.headers['x-skein-reason']).toBe('upstream_connect_error');
    }
    // Round robin over one live and one dead endpoint: half of them met the dead one.
    expect(statuses.filter((s) => s === 503).length).toBe(2);
  });

  it('sends a bodiless request to another endpoint: every request is answered by the live one', async () => {
    for (let i = 0; i < 8; i++) {
      const r = await request(pair.outbound, { host: 'mixed.default', path: `/n${i}` });
      expect(r.status, r.body).toBe(200);
    }
    const retries = (await pair.clientRegistry.getSingleMetric('skein_upstream_connect_retries_total')?.get())?.values[0]?.value ?? 0;
    expect(retries).toBeGreaterThan(0);
    // The peer's 503s count as failures of the dead endpoint in /clusters (rq_error), not only as retries.
    const stat = pair.client.clusterStats().find((c) => c.name === SVC);
    const dead = stat?.endpoints.find((e) => e.inboundPort !== undefined && e.port === deadPort);
    expect(dead?.failed).toBeGreaterThan(0);
    expect(stat?.endpoints.find((e) => e.port === app.port)?.failed).toBe(0);
  });
});

describe('a gRPC Service with one replica whose app is down', () => {
  const GRPC = 'outbound|50051||echo.default.svc.cluster.local';

  it('sends each unary call that met the dead app to the live replica (the peer answered UNAVAILABLE, upstream_connect_error)', async () => {
    const live = await startGrpcEcho();
    const deadPort = await freePort();
    const pair = await startPair([live.port, deadPort]);
    const m = mesh(
      [cluster(GRPC, [endpoint(deadPort, pair.inbound), endpoint(live.port, pair.inbound)], { protocol: 'http2', lbPolicy: 'round-robin' })],
      [{ name: 'echo', domains: domains('echo', 'default', '10.96.0.53', 50051, false), routes: [route(GRPC)] }],
    );
    pair.client.update(m);
    pair.server.update(m);
    const c = new grpc.Client(`127.0.0.1:${pair.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'echo.default:50051' });
    try {
      for (let i = 0; i < 6; i++) expect((await unary(c, '/demo.Echo/Say', `call ${i}`)).reply).toMatch(new RegExp(`^call ${i}`));
      const retries = (await pair.clientRegistry.getSingleMetric('skein_upstream_connect_retries_total')?.get())?.values[0]?.value ?? 0;
      expect(retries).toBeGreaterThanOrEqual(3);
    } finally {
      c.close();
      await pair.close();
      live.server.forceShutdown();
    }
  });
});
