// An HTTP/2 cluster whose peer drops connections right at the handshake (a sidecar going away): answered, never stuck.
import net from 'node:net';
import http2 from 'node:http2';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticSource, testCa, type TestCa } from '../tls/mesh-helper.ts';
import { closeServer, cluster, domains, endpoint, listen, mesh, route } from './harness.ts';
import { type Sidecar, startSidecar } from './mtls-harness.ts';

const SVC = 'outbound|9090||gone.default.svc.cluster.local';
const SVC2 = 'outbound|9091||gone2.default.svc.cluster.local';

describe('an HTTP/2 upstream whose peer drops connections during the handshake', () => {
  let ca: TestCa;
  let client: Sidecar;
  let dropper: net.Server;
  let afterHandshake: tls.Server;

  beforeAll(async () => {
    ca = await testCa('mesh.test');
    // Reads the ClientHello, then closes: what a peer sidecar that is going away does to a new connection.
    dropper = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.destroy());
    });
    const port = await listen(dropper);
    // Completes the mTLS handshake, then closes at once: a replacement sidecar that accepted and then exited.
    const gone = await ca.leaf('default', 'gone');
    afterHandshake = tls.createServer({ key: gone.keyPem, cert: gone.certChainPem.join(''), ca: gone.trustBundlePem.join(''), requestCert: true, rejectUnauthorized: false });
    afterHandshake.on('secureConnection', (s) => s.destroy());
    afterHandshake.on('tlsClientError', () => {});
    const tlsPort = await listen(afterHandshake as unknown as net.Server);
    client = await startSidecar(new StaticSource(await ca.leaf('default', 'web')));
    client.plane.update(
      mesh(
        [
          cluster(SVC, [endpoint(9090, port)], { protocol: 'http2', service: 'default/gone' }),
          cluster(SVC2, [endpoint(9091, tlsPort)], { protocol: 'http2', service: 'default/gone' }),
        ],
        [
          { name: 'gone', domains: domains('gone', 'default', '10.96.0.61', 9090, false), routes: [route(SVC)] },
          { name: 'gone2', domains: domains('gone2', 'default', '10.96.0.62', 9091, false), routes: [route(SVC2)] },
        ],
      ),
    );
  });

  afterAll(async () => {
    await client?.close();
    await closeServer(dropper);
    await closeServer(afterHandshake as unknown as net.Server);
    await ca?.close();
  });

  it.each([
    ['before the handshake ends', SVC, 'gone.default:9090'],
    ['right after the handshake', SVC2, 'gone2.default:9091'],
  ])('answers every request 503 and holds none in flight, when it drops %s', async (_when, name, authority) => {
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    session.on('error', () => {});
    try {
      const one = (): Promise<number> =>
        new Promise((resolve) => {
          const st = session.request({ ':path': '/x', ':authority': authority });
          let status = 0;
          st.on('response', (h) => (status = Number(h[':status'])));
          st.resume();
          st.on('error', () => {});
          st.on('close', () => resolve(status));
        });
      for (let round = 0; round < 3; round++) {
        const statuses = await Promise.all(Array.from({ length: 20 }, one));
        expect(statuses.every((s) => s === 503)).toBe(true);
      }
      const stat = client.plane.clusterStats().find((c) => c.name === name);
      expect(stat?.endpoints[0]?.active).toBe(0);
    } finally {
      session.close();
    }
  }, 20_000);
});
