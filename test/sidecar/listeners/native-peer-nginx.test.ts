// nginx as a native peer with its own defaults (Debian 12's nginx 1.22 offers TLS 1.2 at most): calling a sidecar, and receiving from one.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticSource, testCa, type TestCa } from '../tls/mesh-helper.ts';
import { cluster, domains, endpoint, freePort, mesh, request, route } from './harness.ts';
import { apiMesh, metricValue, type Sidecar, startIdentityApp, startSidecar, SVC } from './mtls-harness.ts';
import { installed, waitForPort } from './native-process.ts';

const WEB_ID = 'spiffe://mesh.test/ns/default/sa/web';
const API_ID = 'spiffe://mesh.test/ns/default/sa/api';

const NGINX = installed('nginx', ['-v']);
if (!NGINX) console.warn('native-peer-nginx.test.ts: skipped, nginx is not installed (.ci/run installs it)');

/** Starts nginx in the foreground, one process, on `http` (an http{} block's servers) and waits for `port`. */
async function startNginx(dir: string, http: string, port: number): Promise<ChildProcess> {
  const conf = join(dir, 'nginx.conf');
  await writeFile(
    conf,
    `daemon off;
master_process off;
pid ${join(dir, 'nginx.pid')};
error_log stderr warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${http}
}
`,
  );
  let stderr = '';
  const proc = spawn('nginx', ['-p', dir, '-c', conf, '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitForPort('nginx', port, proc, () => stderr);
  return proc;
}

describe.skipIf(!NGINX)('nginx (its default TLS versions) as a native peer', () => {
  let ca: TestCa;
  let dir: string;
  let app: Awaited<ReturnType<typeof startIdentityApp>>;
  let server: Sidecar;
  let client: Sidecar;
  const procs: ChildProcess[] = [];

  beforeAll(async () => {
    ca = await testCa('mesh.test');
    dir = await mkdtemp(join(tmpdir(), 'skein-nginx-peer-'));
    app = await startIdentityApp();
    server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port]);
    // A policy puts the inbound side on its L7 path, where the app is told the caller's verified identity.
    server.plane.update(apiMesh(app.port, server.inbound, { authz: { allow: [{ from: [{ principals: [WEB_ID] }], to: [] }], deny: [] } }));
    client = await startSidecar(new StaticSource(await ca.leaf('default', 'web')));
    for (const [name, leaf] of [
      ['web', await ca.leaf('default', 'web')],
      ['api', await ca.leaf('default', 'api')],
    ] as const) {
      await writeFile(join(dir, `${name}-cert.pem`), leaf.certChainPem.join('\n'));
      await writeFile(join(dir, `${name}-key.pem`), leaf.keyPem, { mode: 0o600 });
      await writeFile(join(dir, 'roots.pem'), leaf.trustBundlePem.join('\n'));
    }
  });

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await client?.close();
    await server?.close();
    await new Promise((r) => app?.server.close(r));
    await rm(dir, { recursive: true, force: true });
    await ca?.close();
  });

  it('calls a sidecar over mTLS (proxy_ssl_certificate) and the app sees its identity', async () => {
    const port = await freePort();
    // nginx checks an upstream certificate's DNS name, and mesh certificates carry only a SPIFFE URI: so
    // proxy_ssl_verify stays off here, and the sidecar still verifies nginx's certificate against the mesh CA.
    procs.push(
      await startNginx(
        dir,
        `  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass https://127.0.0.1:${server.inbound};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate ${dir}/web-cert.pem;
      proxy_ssl_certificate_key ${dir}/web-key.pem;
      proxy_ssl_session_reuse on;
    }
  }`,
        port,
      ),
    );
    for (const path of ['/from-nginx-1', '/from-nginx-2']) {
      const r = await request(port, { host: 'api.default', path });
      expect(r.status, r.body).toBe(200);
      expect(r.body).toBe(`${path} peer=${WEB_ID}`);
    }
    expect(await metricValue(server.registry, 'skein_inbound_connections_total', { transport: 'mtls', peer: WEB_ID })).toBeGreaterThan(0);
  });

  it('receives from a sidecar (listen ssl proxy_protocol; skein.dev/proxy-protocol: outside-tls) and reads the app port it names', async () => {
    const port = await freePort();
    procs.push(
      await startNginx(
        dir,
        `  server {
    listen 127.0.0.1:${port} ssl proxy_protocol;
    ssl_certificate ${dir}/api-cert.pem;
    ssl_certificate_key ${dir}/api-key.pem;
    ssl_client_certificate ${dir}/roots.pem;
    ssl_verify_client on;
    location / { return 200 "nginx app-port=$proxy_protocol_server_port client-verify=$ssl_client_verify\\n"; }
  }`,
        port,
      ),
    );
    client.plane.update(
      mesh(
        [cluster(SVC, [endpoint(app.port, port, { proxyProtocol: 'outside-tls' })], { service: 'default/api', identities: [API_ID] })],
        [{ name: 'api', domains: domains('api', 'default', '10.96.0.20', 80, true), routes: [route(SVC)] }],
      ),
    );
    const r = await request(client.outbound, { host: 'api.default', path: '/to-nginx' });
    expect(r.status, r.body).toBe(200);
    expect(r.body).toBe(`nginx app-port=${app.port} client-verify=SUCCESS\n`);
  });
});
