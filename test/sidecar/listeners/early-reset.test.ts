// An app that answers an upload early (a 413, or a 200) and closes with the body unread, so that its kernel resets the
// connection: the caller still gets that answer, through a sidecar pair (plaintext, L7 inbound, mTLS), straight to the
// app, and over an opaque TCP listener.
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListenerConfig } from '../../../sidecar/xds/model.ts';
import { StaticSource, type TestCa, testCa } from '../tls/mesh-helper.ts';
import { cluster, endpoint, freePort, listen, mesh, route, startPair } from './harness.ts';
import { startSidecar } from './mtls-harness.ts';

const RAW = 'outbound|80||raw.default.svc.cluster.local';
const OPAQUE = 'outbound|9000||opaque.default.svc.cluster.local';
const SIZES = [100_000, 1_000_000, 5_000_000];
const RUNS = 4;

interface RudeApp {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * An app that reads the request head only, answers `status` at once and closes with the body unread: `destroy` at
 * once (its kernel answers the body with a reset), or `end` (FIN) and then destroy 20 ms later.
 */
async function rudeApp(status: string, how: 'destroy' | 'end'): Promise<RudeApp> {
  const open = new Set<net.Socket>();
  const server = net.createServer((s) => {
    open.add(s);
    s.once('close', () => open.delete(s));
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      s.pause();
      const body = `${status}\n`;
      s.write(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      if (how === 'destroy') s.destroy();
      else {
        s.end();
        setTimeout(() => s.destroy(), 20);
      }
    };
    s.on('data', onData);
    s.on('error', () => {});
  });
  const port = await listen(server);
  return {
    port,
    close: () =>
      new Promise((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** POSTs `size` bytes with node's http client; resolves the status and x-skein-reason, or the client's error code. */
function upload(port: number, host: string, size: number): Promise<string> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(`${res.statusCode ?? 0}${res.headers['x-skein-reason'] === undefined ? '' : ` ${String(res.headers['x-skein-reason'])}`}`));
      res.on('error', (e: NodeJS.ErrnoException) => resolve(`response ${e.code ?? e.message}`));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(`request ${e.code ?? e.message}`));
    req.end(Buffer.alloc(size, 'x'));
  });
}

/** RUNS uploads of each size; the outcomes that were not `want`. */
async function misses(port: number, host: string, want: string): Promise<string[]> {
  const bad: string[] = [];
  for (const size of SIZES) {
    for (let i = 0; i < RUNS; i++) {
      const got = await upload(port, host, size);
      if (got !== want) bad.push(`${size}: ${got}`);
    }
  }
  return bad;
}

interface Topology {
  /** The port and Host the caller uploads to. */
  target(app: RudeApp): Promise<{ port: number; host: string }>;
  close(): Promise<void>;
}

let ca: TestCa | undefined;
afterAll(async () => {
  await ca?.close();
});

const topologies: Record<string, () => Topology> = {
  'a plaintext sidecar pair (inbound L4 pipe)': () => {
    let close = async (): Promise<void> => {};
    return {
      async target(app) {
        const pair = await startPair([app.port]);
        pair.client.update(mesh([cluster(RAW, [endpoint(app.port, pair.inbound)])], [{ name: 'raw', domains: ['raw'], routes: [route(RAW)] }]));
        close = () => pair.close();
        return { port: pair.outbound, host: 'raw' };
      },
      close: () => close(),
    };
  },
  'a sidecar pair whose inbound judges each request (L7 authorization, undici to the app)': () => {
    let close = async (): Promise<void> => {};
    return {
      async target(app) {
        const pair = await startPair([app.port]);
        const anyone = { allow: [{ from: [], to: [] }], deny: [] };
        const m = mesh([cluster(RAW, [endpoint(app.port, pair.inbound)], { authz: anyone })], [{ name: 'raw', domains: ['raw'], routes: [route(RAW)] }]);
        pair.client.update(m);
        pair.server.update(m);
        close = () => pair.close();
        return { port: pair.outbound, host: 'raw' };
      },
      close: () => close(),
    };
  },
  'an mTLS sidecar pair': () => {
    let close = async (): Promise<void> => {};
    return {
      async target(app) {
        ca ??= await testCa('mesh.test');
        const server = await startSidecar(new StaticSource(await ca.leaf('default', 'raw')), [app.port]);
        const client = await startSidecar(new StaticSource(await ca.leaf('default', 'web')));
        const m = mesh([cluster(RAW, [endpoint(app.port, server.inbound)])], [{ name: 'raw', domains: ['raw'], routes: [route(RAW)] }]);
        server.plane.update(m);
        client.plane.update(m);
        close = async () => {
          await Promise.all([client.close(), server.close()]);
        };
        return { port: client.outbound, host: 'raw' };
      },
      close: () => close(),
    };
  },
  'the outbound sidecar straight to the app (HTTP/1.1 upstream)': () => {
    let close = async (): Promise<void> => {};
    return {
      async target(app) {
        const pair = await startPair([]);
        pair.client.update(mesh([cluster(RAW, [endpoint(app.port)])], [{ name: 'raw', domains: ['raw'], routes: [route(RAW)] }]));
        close = () => pair.close();
        return { port: pair.outbound, host: 'raw' };
      },
      close: () => close(),
    };
  },
  'an opaque TCP listener and the peer inbound': () => {
    let close = async (): Promise<void> => {};
    return {
      async target(app) {
        const pair = await startPair([app.port]);
        const port = await freePort();
        const tcp: ListenerConfig = { kind: 'tcp', name: `opaque_${port}`, version: '1', address: '10.96.0.60', port, cluster: OPAQUE };
        pair.client.update(mesh([cluster(OPAQUE, [endpoint(app.port, pair.inbound)], { protocol: 'tcp' })], [], [tcp]));
        for (let i = 0; i < 100 && pair.client.tcpListenerStats()[0]?.bound !== true; i++) await new Promise((r) => setTimeout(r, 20));
        close = () => pair.close();
        return { port, host: 'opaque' };
      },
      close: () => close(),
    };
  },
};

const apps: Array<{ name: string; status: string; how: 'destroy' | 'end'; want: string }> = [
  { name: 'a 413, then a reset', status: '413 Payload Too Large', how: 'destroy', want: '413' },
  { name: 'a 200, then a reset', status: '200 OK', how: 'destroy', want: '200' },
  { name: 'a 413, a FIN, then a reset', status: '413 Payload Too Large', how: 'end', want: '413' },
];

for (const [topologyName, make] of Object.entries(topologies)) {
  describe(`an early answer to an upload through ${topologyName}`, () => {
    for (const a of apps) {
      describe(a.name, () => {
        let app: RudeApp;
        const topology = make();
        let target: { port: number; host: string };
        beforeAll(async () => {
          app = await rudeApp(a.status, a.how);
          target = await topology.target(app);
        });
        afterAll(async () => {
          await topology.close();
          await app.close();
        });

        it(`reaches the caller every time (${RUNS} uploads each of ${SIZES.join(', ')} bytes)`, async () => {
          expect(await misses(target.port, target.host, a.want)).toEqual([]);
        }, 30_000);
      });
    }
  });
}
