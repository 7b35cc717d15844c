// sessionAffinity: ClientIP through the outbound: a ring hash on the caller's address (the pod's IP over loopback) keeps each pod on one endpoint.
import http2 from 'node:http2';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataPlane, type DataPlane } from '../../../sidecar/listeners/index.ts';
import { cluster, closeServer, domains, endpoint, mesh, request, route, startApp } from './harness.ts';

const SVC = 'outbound|80||sticky.default.svc.cluster.local';

describe('sessionAffinity: ClientIP (ring hash on the caller\'s address)', () => {
  const apps: Awaited<ReturnType<typeof startApp>>[] = [];
  const planes: DataPlane[] = [];

  beforeAll(async () => {
    for (const name of ['a', 'b', 'c', 'd']) apps.push(await startApp(name));
  });

  afterAll(async () => {
    for (const p of planes) await p.close(50);
    for (const a of apps) await closeServer(a.server);
  });

  /** A sidecar for pod `podIp` whose app calls it over loopback, as every pod's app does without interception. */
  async function sidecar(podIp: string): Promise<DataPlane> {
    const plane = createDataPlane(
      { outbound: { host: '127.0.0.1', port: 0 }, inbound: { host: '127.0.0.1', port: 0 }, appPorts: [], namespace: 'default', podIp },
      new Registry(),
    );
    await plane.start();
    planes.push(plane);
    const forward = route(SVC);
    plane.update(
      mesh(
        [cluster(SVC, apps.map((a) => endpoint(a.port)), { lbPolicy: 'ring-hash' })],
        [
          {
            name: 'sticky',
            domains: domains('sticky', 'default', '10.96.0.30', 80, true),
            routes: [{ ...forward, action: { ...forward.action, hashSourceIp: true } as typeof forward.action }],
          },
        ],
      ),
    );
    return plane;
  }

  it('sends every request of one pod, HTTP/1.1 and HTTP/2 alike, to one endpoint, and spreads pods over endpoints', async () => {
    const chosen = new Map<string, string>();
    for (let i = 0; i < 8; i++) {
      const podIp = `10.0.0.${i + 1}`;
      const plane = await sidecar(podIp);
      const seen = new Set<string>();
      for (let n = 0; n < 10; n++) {
        const r = await request(plane.ports().outbound, { host: 'sticky.default', path: '/' });
        expect(r.status).toBe(200);
        seen.add(String(r.headers['x-app']));
      }
      const session = http2.connect(`http://127.0.0.1:${plane.ports().outbound}`);
      for (let n = 0; n < 5; n++) {
        const app = await new Promise<string>((resolve, reject) => {
          const s = session.request({ ':path': '/', ':authority': 'sticky.default' });
          s.on('response', (h) => resolve(String(h['x-app'])));
          s.on('error', reject);
          s.resume();
          s.end();
        });
        seen.add(app);
      }
      session.close();
      expect([...seen], podIp).toHaveLength(1);
      chosen.set(podIp, [...seen][0] as string);
    }
    expect(new Set(chosen.values()).size).toBeGreaterThan(1);
  });
});
