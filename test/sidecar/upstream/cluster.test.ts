import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { Cluster } from '../../../sidecar/upstream/index.ts';
import type { DispatchHandler, DispatchRequest, Headers } from '../../../sidecar/upstream/index.ts';
import type { LocalReplyError } from '../../../sidecar/listeners/errors.ts';
import { DataPlaneMetrics } from '../../../sidecar/telemetry/metrics.ts';
import type { ClusterConfig, EndpointConfig } from '../../../sidecar/xds/model.ts';
import { closeServer, listen } from '../listeners/harness.ts';

function config(endpoints: EndpointConfig[], version = '1'): ClusterConfig {
  return { name: 'c', version, kind: 'eds', lbPolicy: 'round-robin', connectTimeoutMs: 1000, protocol: 'http1', endpoints, endpointsVersion: version };
}
const ep = (port: number, health: EndpointConfig['health'] = 'healthy'): EndpointConfig => ({ address: '127.0.0.1', port, weight: 1, health });

/** Sends one GET through an endpoint's pool and resolves with status and body. */
function send(cluster: Cluster, path: string): Promise<{ status: number; body: string; port: number }> {
  const e = cluster.pick({ hash: undefined });
  if (e === undefined) return Promise.reject(new Error('no endpoint'));
  return new Promise((resolve, reject) => {
    let status = 0;
    let body = '';
    const handler: DispatchHandler = {
      onRequestStart() {},
      onResponseStart(s: number, _h: Headers) {
        status = s;
      },
      onResponseData(c: Buffer) {
        body += c;
        return true;
      },
      onResponseEnd() {
        resolve({ status, body, port: e.config.port });
      },
      onResponseError(err: LocalReplyError) {
        reject(err);
      },
    };
    const req: DispatchRequest = { cluster: 'c', method: 'GET', path, authority: 'c', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs: 0 };
    e.pool.request(req, handler, false);
  });
}

describe('cluster endpoint updates', () => {
  const servers: http.Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(closeServer));
  });

  async function app(delayMs = 0): Promise<number> {
    const s = http.createServer((req, res) => setTimeout(() => res.end(`${req.url}`), req.url === '/slow' ? delayMs : 0));
    servers.push(s);
    return listen(s);
  }

  it('keeps pools of surviving endpoints, drains removed ones after their in-flight requests, never picks draining', async () => {
    const [p1, p2, p3] = [await app(300), await app(300), await app(300)];
    const cluster = new Cluster(config([ep(p1), ep(p2)]), '127.0.0.1', new DataPlaneMetrics(new Registry()).cluster('outbound', 'c'));
    const e1 = cluster.endpoint(`127.0.0.1:${p1}`)!;
    const e2 = cluster.endpoint(`127.0.0.1:${p2}`)!;
    // Warm both pools.
    await send(cluster, '/');
    await send(cluster, '/');
    expect(e1.pool.connections + e2.pool.connections).toBe(2);

    // A slow request in flight on e2, then e2 is removed, e1 turns draining, p3 is added.
    let slow: Promise<{ status: number; body: string; port: number }> | undefined;
    for (let i = 0; i < 2 && slow === undefined; i++) {
      const next = cluster.pick({ hash: undefined })!;
      if (next === e2) {
        // put it back in the rotation order: send on e2 directly
        slow = new Promise((resolve, reject) => {
          const h: DispatchHandler = {
            onRequestStart() {},
            onResponseStart() {},
            onResponseData() {
              return true;
            },
            onResponseEnd() {
              resolve({ status: 200, body: 'slow', port: p2 });
            },
            onResponseError: reject,
          };
          e2.pool.request({ cluster: 'c', method: 'GET', path: '/slow', authority: 'c', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs: 0 }, h, false);
        });
      }
    }
    expect(slow).toBeDefined();
    expect(e2.pool.active).toBe(1);

    cluster.update(config([ep(p1, 'draining'), ep(p3)], '2'));
    expect(cluster.endpoint(`127.0.0.1:${p1}`)).toBe(e1); // surviving endpoint keeps its object and pool
    expect(e1.pool.connections).toBe(1);
    expect(cluster.endpoint(`127.0.0.1:${p2}`)).toBeUndefined();
    expect(e2.pool.isDraining).toBe(true);
    expect(cluster.stat().draining).toBe(1);

    // Draining e1 gets nothing; every new request goes to p3.
    for (let i = 0; i < 6; i++) expect((await send(cluster, '/')).port).toBe(p3);

    // The removed endpoint's in-flight request finishes, then its pool closes.
    await slow;
    await new Promise((r) => setTimeout(r, 20));
    expect(e2.pool.active).toBe(0);
    expect(e2.pool.connections).toBe(0);
    expect(cluster.stat().draining).toBe(0);

    // Back to healthy: e1 is picked again on its old pool.
    cluster.update(config([ep(p1), ep(p3)], '3'));
    const ports = new Set<number>();
    for (let i = 0; i < 4; i++) ports.add((await send(cluster, '/')).port);
    expect(ports).toEqual(new Set([p1, p3]));
    expect(cluster.endpoint(`127.0.0.1:${p1}`)).toBe(e1);
    expect(e1.pool.connections).toBe(1);
    await cluster.close(100);
  });

  it('makes an endpoint pool on first use only; a pool made after removal drains once its request ends', async () => {
    const [p1, p2] = [await app(), await app()];
    const cluster = new Cluster(config([ep(p1), ep(p2)]), '127.0.0.1', new DataPlaneMetrics(new Registry()).cluster('outbound', 'c'));
    const e1 = cluster.endpoint(`127.0.0.1:${p1}`)!;
    const e2 = cluster.endpoint(`127.0.0.1:${p2}`)!;
    expect(e1.madePool).toBeUndefined();
    expect(e2.madePool).toBeUndefined();
    expect(cluster.stat().endpoints.map((e) => [e.active, e.connections])).toEqual([
      [0, 0],
      [0, 0],
    ]);
    // Removing an endpoint that never had a pool leaves nothing draining.
    cluster.update(config([ep(p1)], '2'));
    expect(cluster.stat().draining).toBe(0);
    expect(e2.madePool).toBeUndefined();
    // A caller still holding the removed endpoint gets a pool that serves it, then closes.
    const handled = new Promise<number>((resolve, reject) => {
      let status = 0;
      e2.pool.request(
        { cluster: 'c', method: 'GET', path: '/late', authority: 'c', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs: 0 },
        {
          onRequestStart() {},
          onResponseStart(s: number) {
            status = s;
          },
          onResponseData: () => true,
          onResponseEnd: () => resolve(status),
          onResponseError: reject,
        },
        false,
      );
    });
    expect(e2.madePool?.isDraining).toBe(true);
    expect(await handled).toBe(200);
    await new Promise((r) => setTimeout(r, 20));
    expect(e2.madePool?.connections).toBe(0);
    expect((await send(cluster, '/x')).port).toBe(p1);
    expect(e1.madePool?.connections).toBe(1);
    await cluster.close(100);
  });

  it('offers a retry the least loaded healthy endpoint other than the one that failed', () => {
    const cluster = new Cluster(config([ep(1), ep(2), ep(3), ep(4, 'unhealthy')]), '127.0.0.1', new DataPlaneMetrics(new Registry()).cluster('outbound', 'c'));
    const [e1, e2, e3] = [1, 2, 3].map((p) => cluster.endpoint(`127.0.0.1:${p}`)!);
    e1!.load.finish(e1!.load.start(), true);
    e2!.load.start();
    expect(cluster.another(e1!)).toBe(e3);
    e3!.load.start();
    e3!.load.start();
    expect(cluster.another(e1!)).toBe(e2);
    expect(cluster.another(e2!)).toBe(e3); // e1 is ejected; e4 is not healthy
  });

  it('forgives an endpoint its failures when it comes back into rotation (not ready, then ready)', () => {
    const cluster = new Cluster(config([ep(1), ep(2)]), '127.0.0.1', new DataPlaneMetrics(new Registry()).cluster('outbound', 'c'));
    const e1 = cluster.endpoint('127.0.0.1:1')!;
    e1.load.finish(e1.load.start(), true);
    expect(e1.load.ejectedForMs).toBeGreaterThan(200);
    cluster.update(config([ep(1, 'unhealthy'), ep(2)], '2'));
    expect(e1.load.ejectedForMs).toBeGreaterThan(200); // out of rotation: nothing changes
    cluster.update(config([ep(1), ep(2)], '3'));
    expect(cluster.endpoint('127.0.0.1:1')).toBe(e1);
    expect(e1.load.ejectedForMs).toBe(0);
  });

  it("starts an endpoint added to a measured cluster from its peers' latency, not the 30 ms default", () => {
    const cluster = new Cluster(config([ep(1), ep(2)]), '127.0.0.1', new DataPlaneMetrics(new Registry()).cluster('outbound', 'c'));
    // Peers measured at 200 ms (a peak sample replaces the estimate at once): a newcomer at 30 ms would take
    // everything; at 4 ms peers it would get nothing. Either way it should start level with them.
    for (const key of ['127.0.0.1:1', '127.0.0.1:2']) {
      const load = cluster.endpoint(key)!.load;
      load.finish(load.start()); // its first answer (warm-up)
      load.observe(200);
    }
    cluster.update(config([ep(1), ep(2), ep(3)], '2'));
    const added = cluster.endpoint('127.0.0.1:3')!.load;
    expect(added.latencyMs).toBeGreaterThan(190);
    expect(added.latencyMs).toBeLessThan(260);
    // A cluster with nothing measured yet keeps the default.
    const fresh = new Cluster(config([ep(1)]), '127.0.0.1', new DataPlaneMetrics(new Registry()).cluster('outbound', 'd'));
    fresh.update(config([ep(1), ep(2)], '2'));
    expect(fresh.endpoint('127.0.0.1:2')!.load.latencyMs).toBe(30);
  });

  it('has no picker when no endpoint is healthy or draining', () => {
    const cluster = new Cluster(config([ep(1, 'unhealthy'), ep(2, 'unhealthy')]), '127.0.0.1', new DataPlaneMetrics(new Registry()).cluster('outbound', 'c'));
    expect(cluster.picker).toBeUndefined();
    expect(cluster.pick({ hash: undefined })).toBeUndefined();
  });
});
