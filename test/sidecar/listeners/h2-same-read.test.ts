// An HTTP/2 upstream whose response head and body arrive in one read: over TLS node can emit the body before the head.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import { StaticSource, testCa, type TestCa } from '../tls/mesh-helper.ts';
import { closeServer, cluster, domains, endpoint, h2Frame, listen, mesh, route } from './harness.ts';
import { type Sidecar, startSidecar } from './mtls-harness.ts';

const SVC = 'outbound|8080||oneread.default.svc.cluster.local';
const BODY = 'all in one read';

const frame = h2Frame;

/**
 * A minimal HTTP/2 server on a raw socket: its SETTINGS, an ACK of the client's, and for every request one write
 * holding HEADERS (`:status: 200`, HPACK static index 8) and DATA with END_STREAM.
 */
function oneReadServer(): net.Server {
  return net.createServer((socket) => {
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let prefaced = false;
    socket.write(frame(0x4, 0, 0, Buffer.alloc(0)));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!prefaced) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        prefaced = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) return;
        const type = buf[3] as number;
        const flags = buf[4] as number;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type === 0x4 && (flags & 0x1) === 0) socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0)));
        if (type === 0x1) socket.write(Buffer.concat([frame(0x1, 0x4, id, Buffer.from([0x88])), frame(0x0, 0x1, id, Buffer.from(BODY))]));
      }
    });
  });
}

describe('an HTTP/2 upstream that sends head and body in one read, over mTLS between sidecars', () => {
  let ca: TestCa;
  let client: Sidecar;
  let peer: Sidecar;
  let server: net.Server;

  beforeAll(async () => {
    ca = await testCa('mesh.test');
    server = oneReadServer();
    const port = await listen(server);
    client = await startSidecar(new StaticSource(await ca.leaf('default', 'web')));
    peer = await startSidecar(new StaticSource(await ca.leaf('default', 'oneread')), [port]);
    const m = mesh(
      [cluster(SVC, [endpoint(port, peer.inbound)], { protocol: 'http2', service: 'default/oneread' })],
      [{ name: 'oneread', domains: domains('oneread', 'default', '10.96.0.60', 8080, false), routes: [route(SVC)] }],
    );
    client.plane.update(m);
    peer.plane.update(m);
  });

  afterAll(async () => {
    await client?.close();
    await peer?.close();
    await closeServer(server);
    await ca?.close();
  });

  it('gives every h2c caller the head, then the body, and keeps serving (no crash, no spurious reset)', async () => {
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    session.on('error', () => {});
    try {
      const one = (): Promise<{ status: number; body: string; rst: number | undefined }> =>
        new Promise((resolve) => {
          const st = session.request({ ':path': '/x', ':authority': 'oneread.default:8080' });
          let status = 0;
          let body = '';
          st.on('response', (h) => (status = Number(h[':status'])));
          st.setEncoding('utf8');
          st.on('data', (c: string) => (body += c));
          st.on('error', () => {});
          st.on('close', () => resolve({ status, body, rst: st.rstCode }));
        });
      const results = await Promise.all(Array.from({ length: 200 }, one));
      expect(results.filter((r) => r.status !== 200 || r.body !== BODY)).toEqual([]);
      expect(results.every((r) => r.rst === 0)).toBe(true);
    } finally {
      session.close();
    }
  });
});
