// The inbound wait after a PROXY header sent before TLS: a TLS handshake that came while the sidecar was held is still read as TLS.
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { encodeProxyHeader } from '../../../sidecar/upstream/index.ts';
import { StaticSource, testCa } from '../tls/mesh-helper.ts';
import { apiMesh, metricValue, startIdentityApp, startSidecar } from './mtls-harness.ts';

/** Holds the event loop, as a long GC pause or a CPU-starved process does. */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

describe('a PROXY header before TLS, then the handshake while the sidecar is held past its 100 ms wait for it', () => {
  it('is still taken as mTLS (timers run before I/O: the wait must not decide before reading what came)', async () => {
    const ca = await testCa('mesh.test');
    const app = await startIdentityApp();
    const server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port]);
    try {
      server.plane.update(apiMesh(app.port, server.inbound));
      const web = await ca.leaf('default', 'web');
      const text = await new Promise<string>((resolve, reject) => {
        const raw = net.connect(server.inbound, '127.0.0.1', () => {
          raw.write(encodeProxyHeader('127.0.0.1', 0, '127.0.0.1', app.port));
          setTimeout(() => {
            const s = tls.connect({ socket: raw, key: web.keyPem, cert: web.certChainPem.join(''), ca: web.trustBundlePem.join(''), rejectUnauthorized: false }, () =>
              s.write('GET /held HTTP/1.1\r\nhost: api.default\r\nconnection: close\r\n\r\n'),
            );
            let out = '';
            s.on('data', (d: Buffer) => (out += d.toString()));
            s.on('error', reject);
            s.on('close', () => resolve(out));
          }, 50);
          // The process held past both the caller's handshake start and the sidecar's wait: both timers are due at
          // once, the ClientHello is sent first and sits in the sidecar's socket unread when its wait ends.
          setTimeout(() => block(400), 20);
        });
        raw.on('error', reject);
      });
      expect(text).toMatch(/^HTTP\/1\.1 200 /);
      expect(text).toMatch(/\/held peer=$/);
      expect(await metricValue(server.registry, 'skein_inbound_connections_total', { transport: 'mtls', peer: 'spiffe://mesh.test/ns/default/sa/web' })).toBe(1);
    } finally {
      await server.close();
      await new Promise((r) => app.server.close(r));
      await ca.close();
    }
  });
});
