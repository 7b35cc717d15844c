// sessionAffinity: ClientIP through the outbound: a ring hash on the caller's address (the pod's IP over loopback) keeps each pod on one endpoint.
import http2 from 'node:http2';
import net from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataPlane, type DataPlane } from '../../../sidecar/listeners/index.ts';
import type { ListenerConfig } from '../../../sidecar/xds/model.ts';
import { cluster, closeServer, domains, endpoint, freePort, listen, mesh, request, route, startApp } from './harness.ts';

const SVC = 'outbound|80||sticky.default.svc.cluster.local';
const DB = 'outbound|6379||sticky-db.default.svc.cluster.local';

/** One TCP connection to `port` that sends a line and returns what came back before the close. */
function exchange(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end('ping'));
    let out = '';
    s.on('data', (c) => (out += c));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

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

  it('keeps each pod on one endpoint of a TCP Service too (tcp_proxy hash_policy source_ip)', async () => {
    const servers: net.Server[] = [];
    const ports: number[] = [];
    for (const name of ['w', 'x', 'y', 'z']) {
      const server = net.createServer((sock) => {
        sock.on('data', () => {});
        sock.on('end', () => sock.end(name));
      });
      servers.push(server);
      ports.push(await listen(server));
    }
    try {
      const chosen = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const plane = createDataPlane(
          { outbound: { host: '127.0.0.1', port: 0 }, inbound: { host: '127.0.0.1', port: 0 }, appPorts: [], namespace: 'default', podIp: `10.0.1.${i + 1}` },
          new Registry(),
        );
        await plane.start();
        planes.push(plane);
        const servicePort = await freePort();
        const tcp: ListenerConfig = { kind: 'tcp', name: `10.96.0.31_${servicePort}`, version: '1', address: '10.96.0.31', port: servicePort, cluster: DB, hashSourceIp: true };
        plane.update(mesh([cluster(DB, ports.map((p) => endpoint(p)), { protocol: 'tcp', lbPolicy: 'ring-hash' })], [], [tcp]));
        for (let t = 0; t < 50 && plane.tcpListenerStats()[0]?.bound !== true; t++) await new Promise((r) => setTimeout(r, 20));
        const seen = new Set<string>();
        for (let n = 0; n < 6; n++) seen.add(await exchange(servicePort));
        expect([...seen], `pod ${i + 1}`).toHaveLength(1);
        chosen.add([...seen][0] as string);
      }
      expect(chosen.size).toBeGreaterThan(1);
    } finally {
      for (const server of servers) await closeServer(server);
    }
  });
});
