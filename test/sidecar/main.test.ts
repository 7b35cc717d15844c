// Runs the whole sidecar (config → xDS client → data plane → admin) against an in-process xDS peer and a real backend.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { get } from './outbound-get.ts';
import { fileURLToPath } from 'node:url';
import net, { type AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { CertificateAuthority, createRoot } from '../../control-plane/ca/authority.ts';
import { addCertificateService } from '../../control-plane/ca/service.ts';
import { ServingCertificateProvider } from '../../control-plane/ca/serving.ts';
import { DirectoryCaStore } from '../../control-plane/ca/store.ts';
import { BootstrapTokenVerifier, loadOrCreateTokenSecret, mintBootstrapToken } from '../../control-plane/ca/tokens.ts';
import { pack, TYPE_URL } from '../../proto/index.ts';
import { ADS_SOURCE, outboundListener } from './xds/listener-fixture.ts';
import { checkIdentityMatches, runSidecar } from '../../sidecar/main.ts';
import { XdsPeer } from '../fakes/xds-peer.ts';

const WEB = 'outbound|80||web.default.svc.cluster.local';

function seed(peer: XdsPeer, backendPort: number): void {
  peer.setAny(
    TYPE_URL.cluster,
    WEB,
    pack(TYPE_URL.cluster, {
      name: WEB,
      type: 'EDS',
      eds_cluster_config: { eds_config: ADS_SOURCE, service_name: WEB },
      connect_timeout: { seconds: 1 },
      lb_policy: 'ROUND_ROBIN',
      metadata: { filter_metadata: { skein: { fields: { protocol: { stringValue: 'http' } } } } },
    }),
  );
  peer.setAny(
    TYPE_URL.endpoint,
    WEB,
    pack(TYPE_URL.endpoint, {
      cluster_name: WEB,
      endpoints: [
        {
          load_balancing_weight: { value: 1 },
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: backendPort } } }, health_status: 'HEALTHY' },
          ],
        },
      ],
    }),
  );
  peer.setAny(
    TYPE_URL.listener,
    'virtualOutbound',
    pack(TYPE_URL.listener, outboundListener('outbound/default')),
  );
  peer.setAny(
    TYPE_URL.route,
    'outbound/default',
    pack(TYPE_URL.route, {
      name: 'outbound/default',
      virtual_hosts: [
        { name: 'web', domains: ['web:80', 'web'], routes: [{ match: { prefix: '/' }, route: { cluster: WEB, timeout: { seconds: 0 } } }] },
      ],
    }),
  );
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('runSidecar with mutual TLS', () => {
  it('gets its workload certificate from the CA before it starts, and shows identity and expiry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skein-main-'));
    const caDir = join(dir, 'ca');
    const authority = await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new DirectoryCaStore(caDir) });
    const secret = await loadOrCreateTokenSecret(caDir);
    const serving = await ServingCertificateProvider.start(authority);
    const server = new grpc.Server();
    addCertificateService(server, { authority, verifier: new BootstrapTokenVerifier(secret) });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', serving.credentials(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    cleanups.push(async () => {
      serving.stop();
      await new Promise<void>((r) => server.tryShutdown(() => r()));
      await rm(dir, { recursive: true, force: true });
    });
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, mintBootstrapToken(secret, { namespace: 'default', serviceAccount: 'client' }).token, { mode: 0o600 });
    const rootFile = join(dir, 'root.pem');
    await writeFile(rootFile, serving.current().trustBundlePem);

    const { admin, ports } = await startSidecar([
      '--token-file', tokenFile,
      '--ca-root-file', rootFile,
      '--ca-address', `127.0.0.1:${port}`,
      '--trust-domain', 'mesh.test',
      '--tls-min-version', '1.3',
    ]);
    const dump = (await (await fetch(`${admin}/config_dump`)).json()) as { tls: { mtls: string; spiffeId: string; notAfter: string; minVersion: string } };
    expect(dump.tls.mtls).toBe('on');
    expect(dump.tls.spiffeId).toBe('spiffe://mesh.test/ns/default/sa/client');
    expect(dump.tls.minVersion).toBe('TLSv1.3');
    // --tls-min-version reaches the inbound port: a caller that stops at TLS 1.2 is refused in the handshake.
    const refused = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: ports.inbound, maxVersion: 'TLSv1.2', rejectUnauthorized: false });
      s.on('secureConnect', () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (err) => resolve(err.message));
    });
    expect(refused).toMatch(/protocol version/i);
    const metrics = await (await fetch(`${admin}/stats/prometheus`)).text();
    const expiry = Math.floor(new Date(dump.tls.notAfter).getTime() / 1000);
    expect(metrics).toContain(`skein_sidecar_cert_expiry_timestamp_seconds ${expiry}`);
    expect(metrics).toContain('skein_tls_handshakes_total');
  });

  it('answers on its admin port while it waits for a CA that does not answer, and stops cleanly with exit code 0', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skein-main-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'token'), 'skein1.x.y', { mode: 0o600 });
    await writeFile(join(dir, 'root.pem'), (await createRoot('mesh.test')).certPem);
    const abort = new AbortController();
    let started = false;
    // A free port for the admin server, which answers while the sidecar waits.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const adminPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const run = runSidecar(
      ['--control-plane', '127.0.0.1:1', '--pod', 'p', '--namespace', 'default', '--ip', '127.0.0.1',
        '--outbound-address', '127.0.0.1:0', '--inbound-address', '127.0.0.1:0', '--admin-address', `127.0.0.1:${adminPort}`,
        '--ca-address', '127.0.0.1:1', '--token-file', join(dir, 'token'), '--ca-root-file', join(dir, 'root.pem')],
      { env: {}, signal: abort.signal, onStarted: () => (started = true) },
    );
    const text = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${adminPort}${path}`);
      return `${res.status} ${await res.text()}`;
    };
    // A probe reads why it is not ready (the CA's address and the last error), not "connection refused".
    let ready = '';
    for (let i = 0; i < 50 && !ready.includes('retrying'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await text('/ready').catch((err: Error) => err.message);
    }
    expect(ready).toMatch(/^503 not ready: waiting for the workload certificate from the CA at 127\.0\.0\.1:1: .*retrying in/);
    expect(await text('/healthz')).toBe('200 ok\n');
    expect(await text('/config_dump')).toMatch(/^503 the sidecar is starting: waiting for the workload certificate/);
    abort.abort();
    expect(await run).toBe(0);
    expect(started).toBe(false);
  });
});

describe('checkIdentityMatches', () => {
  it('accepts a certificate for the namespace and service account the sidecar announces', () => {
    expect(() => checkIdentityMatches({ namespace: 'shop', serviceAccount: 'web' }, 'spiffe://mesh.test/ns/shop/sa/web', 't')).not.toThrow();
  });

  it('refuses to start as one identity while announcing another, naming both and the token file', () => {
    expect(() => checkIdentityMatches({ namespace: 'shop', serviceAccount: 'web' }, 'spiffe://mesh.test/ns/shop/sa/frontend', '/run/fe.token')).toThrow(
      /--service-account: the token in \/run\/fe\.token is for shop\/frontend .*--namespace shop --service-account web/,
    );
    expect(() => checkIdentityMatches({ namespace: 'default', serviceAccount: 'default' }, 'spiffe://mesh.test/ns/demo/sa/probe', 't')).toThrow(/demo\/probe/);
  });
});

describe('runSidecar', () => {
  it('prints usage for --help', async () => {
    expect(await runSidecar(['--help'])).toBe(0);
  });

  it('rejects bad flags with SKEIN_CONFIG_INVALID', async () => {
    await expect(runSidecar(['--pod', 'x'], { env: {} })).rejects.toMatchObject({ code: 'SKEIN_CONFIG_INVALID' });
  });

  it('becomes ready with config from the control plane, shows it on the admin server, and drains on stop', async () => {
    const { admin, ports, peer } = await startSidecar();
    const first = peer.requests[0];
    expect(first?.node?.id).toBe('sidecar~127.0.0.1~client-0.default~default.svc.cluster.local');
    expect(first?.node?.metadata?.fields.INBOUND_PORT?.stringValue).toBe(String(ports.inbound));

    const dump = (await (await fetch(`${admin}/config_dump`)).json()) as { clusters: { name: string }[]; xds: { connected: boolean } };
    expect(dump.xds.connected).toBe(true);
    expect(dump.clusters.map((c) => c.name)).toEqual([WEB]);
    expect(await (await fetch(`${admin}/stats/prometheus`)).text()).toContain('skein_sidecar_xds_connected 1');
    const clusters = await (await fetch(`${admin}/clusters`)).text();
    expect(clusters).toContain(`${WEB}::127.0.0.1:`);
  });

  it('proxies a request to the endpoint EDS names', async () => {
    const { ports } = await startSidecar();
    const res = await get(ports.outbound, '/greet', 'web');
    expect(res).toEqual({ status: 200, body: 'hello from backend /greet' });
  });
  it.each(['SIGTERM', 'SIGTERM twice', 'POST /quitquitquit'])('runs as `skein sidecar` and exits 0 after draining on %s', async (how) => {
    const peer = await XdsPeer.start();
    cleanups.push(() => peer.stop());
    seed(peer, 9);
    const cli = fileURLToPath(new URL('../../cli/skein.ts', import.meta.url));
    const child = spawn(
      process.execPath,
      [cli, 'sidecar', '--control-plane', peer.address, '--pod', 'p-0', '--namespace', 'default', '--ip', '127.0.0.1',
        '--outbound-address', '127.0.0.1:0', '--inbound-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0',
        '--drain-timeout', how === 'SIGTERM twice' ? '3s' : '100ms', '--mtls', 'off'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH } },
    );
    cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
    let stderr = '';
    const adminPort = await new Promise<number>((resolve, reject) => {
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        stderr += chunk;
        const m = /"msg":"sidecar started".*?"admin":"[^"]*:(\d+)"/.exec(stderr);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`sidecar exited early (${code}): ${stderr}`)));
    });
    let ready = 0;
    for (let i = 0; i < 200 && ready !== 200; i++) {
      ready = (await fetch(`http://127.0.0.1:${adminPort}/ready`)).status;
      if (ready !== 200) await new Promise((r) => setTimeout(r, 25));
    }
    expect(ready).toBe(200);
    const exited = once(child, 'exit');
    if (how === 'SIGTERM') child.kill('SIGTERM');
    else if (how === 'SIGTERM twice') {
      // A repeat during the drain is logged, not fatal (the default action would kill the process: no exit code 0).
      // A connection to the outbound port keeps the drain going (the workload may still call out) for the repeat.
      const outboundPort = Number(/"outbound":"[^"]*:(\d+)"/.exec(stderr)?.[1]);
      const held = net.connect(outboundPort, '127.0.0.1');
      held.on('error', () => {});
      await once(held, 'connect');
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 100));
      child.kill('SIGTERM');
      held.destroy();
    } else {
      expect((await fetch(`http://127.0.0.1:${adminPort}/quitquitquit`)).status).toBe(405); // GET does nothing
      const r = await fetch(`http://127.0.0.1:${adminPort}/quitquitquit`, { method: 'POST' });
      expect(r.status).toBe(200);
    }
    const [code] = await exited;
    expect(code).toBe(0);
    expect(stderr).toContain(`"msg":"sidecar stopped","reason":"${how === 'SIGTERM twice' ? 'SIGTERM' : how}"`);
    if (how === 'SIGTERM twice') expect(stderr).toContain('already draining');
  });
});

async function startSidecar(
  extraArgs: string[] = ['--mtls', 'off'],
): Promise<{ admin: string; ports: { admin: number; outbound: number; inbound: number }; peer: XdsPeer }> {
  const backend: Server = createServer((req, res) => res.end(`hello from backend ${req.url}`));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => backend.close(r)));
  const peer = await XdsPeer.start();
  cleanups.push(() => peer.stop());
  seed(peer, (backend.address() as AddressInfo).port);

  const abort = new AbortController();
  let ports: { admin: number; outbound: number; inbound: number } | undefined;
  await new Promise<void>((resolve, reject) => {
    const run = runSidecar(
      [
        '--control-plane', peer.address,
        '--pod', 'client-0',
        '--namespace', 'default',
        '--service-account', 'client',
        '--ip', '127.0.0.1',
        '--outbound-address', '127.0.0.1:0',
        '--inbound-address', '127.0.0.1:0',
        '--admin-address', '127.0.0.1:0',
        '--drain-timeout', '100ms',
        ...extraArgs,
      ],
      {
        env: {},
        signal: abort.signal,
        onStarted: (p) => {
          ports = p;
          resolve();
        },
      },
    );
    run.catch(reject);
    cleanups.push(async () => {
      abort.abort();
      expect(await run).toBe(0);
    });
  });
  const admin = `http://127.0.0.1:${ports!.admin}`;
  let ready = await fetch(`${admin}/ready`);
  for (let i = 0; i < 200 && ready.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 25));
    ready = await fetch(`${admin}/ready`);
  }
  expect(ready.status).toBe(200);
  return { admin, ports: ports!, peer };
}
