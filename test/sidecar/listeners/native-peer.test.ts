// A native proxy as a peer: haproxy calling a sidecar (PROXY v2 or v1 before TLS), and a sidecar calling haproxy (skein.dev/proxy-protocol).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeProxyHeader } from '../../../sidecar/upstream/index.ts';
import { haproxyAvailable } from '../../bench/lib/haproxy.ts';
import { StaticSource, testCa, type TestCa } from '../tls/mesh-helper.ts';
import { closeServer, cluster, domains, endpoint, freePort, mesh, request, route, startApp } from './harness.ts';
import { apiMesh, metricValue, type Sidecar, startIdentityApp, startSidecar, SVC } from './mtls-harness.ts';
import { waitForPort } from './native-process.ts';

const WEB_ID = 'spiffe://mesh.test/ns/default/sa/web';

const HAPROXY = haproxyAvailable();
if (!HAPROXY) console.warn('native-peer.test.ts: skipped, haproxy is not installed (.ci/run installs it)');

/** Writes `config` to `dir`/haproxy.cfg, starts haproxy on it and waits until it listens on `port`. */
async function startHaproxy(dir: string, config: string, port: number): Promise<ChildProcess> {
  const cfg = join(dir, 'haproxy.cfg');
  await writeFile(cfg, `global\n  nbthread 1\ndefaults\n  mode http\n  timeout client 10s\n  timeout server 10s\n  timeout connect 2s\n${config}`);
  let stderr = '';
  const proc = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitForPort('haproxy', port, proc, () => stderr);
  return proc;
}

describe.skipIf(!HAPROXY)('haproxy calling a Skein sidecar', () => {
  let ca: TestCa;
  let dir: string;
  let app: Awaited<ReturnType<typeof startIdentityApp>>;
  let server: Sidecar;
  let haproxy: ChildProcess;
  let port: number;

  beforeAll(async () => {
    ca = await testCa('mesh.test');
    dir = await mkdtemp(join(tmpdir(), 'skein-native-peer-'));
    app = await startIdentityApp();
    server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port]);
    // A policy puts the inbound side on its L7 path, where the app is told the caller's verified identity.
    server.plane.update(apiMesh(app.port, server.inbound, { authz: { allow: [{ from: [{ principals: [WEB_ID] }], to: [] }], deny: [] } }));
    const web = await ca.leaf('default', 'web');
    const pem = join(dir, 'web.pem');
    await writeFile(pem, [...web.certChainPem, web.keyPem].join('\n'), { mode: 0o600 });
    const roots = join(dir, 'roots.pem');
    await writeFile(roots, web.trustBundlePem.join('\n'));
    port = await freePort();
    // The PROXY header names the app port (set-dst-port) and goes before the TLS handshake, as haproxy sends it.
    haproxy = await startHaproxy(
      dir,
      `frontend web
  bind 127.0.0.1:${port}
  http-request set-dst-port int(${app.port})
  default_backend api
backend api
  server api 127.0.0.1:${server.inbound} send-proxy-v2 ssl verify required ca-file ${roots} crt ${pem} alpn http/1.1
`,
      port,
    );
  });

  afterAll(async () => {
    haproxy?.kill('SIGKILL');
    await server?.close();
    await new Promise((r) => app?.server.close(r));
    await rm(dir, { recursive: true, force: true });
    await ca?.close();
  });

  it('reaches the app port the PROXY header names, as the identity its certificate proves', async () => {
    const r = await request(port, { host: 'api.default', path: '/from-haproxy' });
    expect(r.status, r.body).toBe(200);
    expect(r.body).toBe(`/from-haproxy peer=${WEB_ID}`);
    expect(await metricValue(server.registry, 'skein_inbound_connections_total', { transport: 'mtls', peer: WEB_ID })).toBeGreaterThan(0);
  });

  it('reads a PROXY v1 (text) header too, as haproxy\'s send-proxy writes it, and sends to the app port it names', async () => {
    // A pod with two app ports, and haproxy naming the second: only the header can tell the sidecar which one.
    const second = await startApp('second');
    const twoPorts = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port, second.port]);
    twoPorts.plane.update(apiMesh(app.port, twoPorts.inbound));
    const v1Port = await freePort();
    const v1 = await startHaproxy(
      dir,
      `frontend web
  bind 127.0.0.1:${v1Port}
  http-request set-dst-port int(${second.port})
  default_backend api
backend api
  server api 127.0.0.1:${twoPorts.inbound} send-proxy ssl verify required ca-file ${join(dir, 'roots.pem')} crt ${join(dir, 'web.pem')} alpn http/1.1
`,
      v1Port,
    );
    try {
      const r = await request(v1Port, { host: 'api.default', path: '/from-haproxy-v1' });
      expect(r.status, r.body).toBe(200);
      expect(r.headers['x-app']).toBe('second');
      expect(r.body).toMatch(/^second GET \/from-haproxy-v1 /);
    } finally {
      v1.kill('SIGKILL');
      await twoPorts.close();
      await closeServer(second.server);
    }
  });
});

describe.skipIf(!HAPROXY)('a Skein sidecar calling haproxy as the receiving peer (skein.dev/proxy-protocol: outside-tls)', () => {
  const API_ID = 'spiffe://mesh.test/ns/default/sa/api';
  let ca: TestCa;
  let dir: string;
  let app: Awaited<ReturnType<typeof startIdentityApp>>;
  let client: Sidecar;
  let haproxy: ChildProcess;
  let port: number;

  beforeAll(async () => {
    ca = await testCa('mesh.test');
    dir = await mkdtemp(join(tmpdir(), 'skein-native-receiver-'));
    app = await startIdentityApp();
    client = await startSidecar(new StaticSource(await ca.leaf('default', 'web')));
    const api = await ca.leaf('default', 'api');
    const pem = join(dir, 'api.pem');
    await writeFile(pem, [...api.certChainPem, api.keyPem].join('\n'), { mode: 0o600 });
    const roots = join(dir, 'roots.pem');
    await writeFile(roots, api.trustBundlePem.join('\n'));
    port = await freePort();
    // accept-proxy reads the header before TLS; a server without a port sends to the port the header names.
    haproxy = await startHaproxy(
      dir,
      `frontend mesh
  bind 127.0.0.1:${port} accept-proxy ssl crt ${pem} ca-file ${roots} verify required alpn http/1.1
  default_backend app
backend app
  server app 127.0.0.1
`,
      port,
    );
  });

  afterAll(async () => {
    haproxy?.kill('SIGKILL');
    await client?.close();
    await new Promise((r) => app?.server.close(r));
    await rm(dir, { recursive: true, force: true });
    await ca?.close();
  });

  it('refuses haproxy when its identity is not the one the cluster lists (first, so no connection is pooled yet)', async () => {
    client.plane.update(
      mesh(
        [cluster(SVC, [endpoint(app.port, port, { proxyProtocol: 'outside-tls' })], { service: 'default/api', identities: ['spiffe://mesh.test/ns/default/sa/other'] })],
        [{ name: 'api', domains: domains('api', 'default', '10.96.0.20', 80, true), routes: [route(SVC)] }],
      ),
    );
    const r = await request(client.outbound, { host: 'api.default', path: '/three' });
    expect(r.status).toBe(503);
    expect(r.body).toContain(API_ID);
  });

  it('reaches the app port the header names, over mTLS that checks haproxy\'s identity', async () => {
    client.plane.update(
      mesh(
        [cluster(SVC, [endpoint(app.port, port, { proxyProtocol: 'outside-tls' })], { service: 'default/api', identities: [API_ID] })],
        [{ name: 'api', domains: domains('api', 'default', '10.96.0.20', 80, true), routes: [route(SVC)] }],
      ),
    );
    for (const path of ['/one', '/two']) {
      const r = await request(client.outbound, { host: 'api.default', path });
      expect(r.status, r.body).toBe(200);
      expect(r.body).toBe(`${path} peer=`);
    }
    expect(await metricValue(client.registry, 'skein_tls_handshakes_total', { direction: 'outbound', result: 'ok' })).toBeGreaterThan(0);
  });
});

describe('a Skein sidecar calling another with the PROXY header before TLS (outside-tls)', () => {
  it('reaches the app through the peer sidecar, and a refused port is a 503 naming the reason', async () => {
    const ca = await testCa('mesh.test');
    const app = await startIdentityApp();
    const server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port]);
    const client = await startSidecar(new StaticSource(await ca.leaf('default', 'web')));
    try {
      client.plane.update(apiMesh(app.port, server.inbound, { identities: ['spiffe://mesh.test/ns/default/sa/api'] }));
      const plain = await request(client.outbound, { host: 'api.default', path: '/inside' });
      expect(plain.status, plain.body).toBe(200);
      const outside = (inboundPort: number) =>
        mesh(
          [cluster(SVC, [endpoint(app.port, inboundPort, { proxyProtocol: 'outside-tls' })], { service: 'default/api' })],
          [{ name: 'api', domains: domains('api', 'default', '10.96.0.20', 80, true), routes: [route(SVC)] }],
        );
      client.plane.update(outside(server.inbound));
      const r = await request(client.outbound, { host: 'api.default', path: '/outside' });
      expect(r.status, r.body).toBe(200);
      expect(r.body).toBe('/outside peer=');
      client.plane.update(outside(await freePort()));
      const refused = await request(client.outbound, { host: 'api.default', path: '/refused' });
      expect(refused.status).toBe(503);
      expect(refused.headers['x-skein-reason']).toBe('upstream_connect_error');
    } finally {
      await client.close();
      await server.close();
      await new Promise((r) => app.server.close(r));
      await ca.close();
    }
  });
});

describe('a PROXY header followed by nothing (a plaintext client of a server-speaks-first app, PERMISSIVE)', () => {
  it('is routed at once to the app, whose greeting comes back', async () => {
    const ca = await testCa('mesh.test');
    const banner = net.createServer((s) => s.end('220 hello\r\n'));
    await new Promise<void>((r) => banner.listen(0, '127.0.0.1', () => r()));
    const appPort = (banner.address() as net.AddressInfo).port;
    const server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [appPort]);
    try {
      server.plane.update(apiMesh(appPort, server.inbound, { mtlsMode: 'PERMISSIVE' }));
      const started = Date.now();
      const got = await new Promise<string>((resolve) => {
        const s = net.connect(server.inbound, '127.0.0.1', () => s.write(encodeProxyHeader('127.0.0.1', 0, '127.0.0.1', appPort)));
        let text = '';
        s.on('data', (d) => (text += d));
        s.on('error', () => {});
        s.on('close', () => resolve(text));
      });
      expect(got).toBe('220 hello\r\n');
      expect(Date.now() - started).toBeLessThan(2000); // not the 5 s wait for a header that never comes
    } finally {
      await server.close();
      banner.close();
      await ca.close();
    }
  });
});

describe('a caller that leaves right after the mTLS handshake, before its PROXY header', () => {
  it('is let go at once, not held for the 5 s header wait', async () => {
    const ca = await testCa('mesh.test');
    const server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [9]);
    try {
      const web = await ca.leaf('default', 'web');
      const started = Date.now();
      await new Promise<void>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port: server.inbound, key: web.keyPem, cert: web.certChainPem.join(''), ca: web.trustBundlePem.join(''), rejectUnauthorized: false }, () => s.end());
        s.on('error', () => {});
        s.on('close', () => resolve());
      });
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await server.close();
      await ca.close();
    }
  });
});
