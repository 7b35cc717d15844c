// Tests that certificate rotation (rotateNow against the real CA service) and root rotation lose no request under load.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../../control-plane/ca/authority.ts';
import { addCertificateService } from '../../../control-plane/ca/service.ts';
import { ServingCertificateProvider } from '../../../control-plane/ca/serving.ts';
import { DirectoryCaStore } from '../../../control-plane/ca/store.ts';
import { BootstrapTokenVerifier, loadOrCreateTokenSecret, mintBootstrapToken } from '../../../control-plane/ca/tokens.ts';
import { WorkloadIdentity } from '../../../sidecar/tls/identity.ts';
import { StaticSource, testCa } from '../tls/mesh-helper.ts';
import { closeServer, request } from './harness.ts';
import { apiMesh, metricValue, type Sidecar, startIdentityApp, startSidecar } from './mtls-harness.ts';

let dir: string;
let server: grpc.Server;
let serving: ServingCertificateProvider;
let address: string;
let secret: Buffer;
let app: Awaited<ReturnType<typeof startIdentityApp>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-rotation-'));
  const caDir = join(dir, 'ca');
  const authority = await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new DirectoryCaStore(caDir) });
  secret = await loadOrCreateTokenSecret(caDir);
  serving = await ServingCertificateProvider.start(authority);
  server = new grpc.Server();
  addCertificateService(server, { authority, verifier: new BootstrapTokenVerifier(secret) });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', serving.credentials(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
  // Every 3rd response closes its connection, so new connections (and handshakes) keep happening under load.
  app = await startIdentityApp(3);
});

afterAll(async () => {
  await closeServer(app.server);
  serving?.stop();
  await new Promise<void>((r) => (server ? server.tryShutdown(() => r()) : r()));
  await rm(dir, { recursive: true, force: true });
});

async function identity(sa: string): Promise<WorkloadIdentity> {
  const path = join(dir, `token-${sa}`);
  await writeFile(path, `${mintBootstrapToken(secret, { namespace: 'default', serviceAccount: sa }).token}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
  return WorkloadIdentity.start({ caAddress: address, caRootPem: serving.current().trustBundlePem, trustDomain: 'mesh.test', tokenFile: path, validitySeconds: 3600 });
}

/** Runs `workers` request loops until `stop` resolves; returns every status seen. */
async function load(outbound: number, workers: number, stop: Promise<void>): Promise<number[]> {
  const statuses: number[] = [];
  let done = false;
  void stop.then(() => (done = true));
  let i = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (!done) {
        const r = await request(outbound, { host: 'api.default', path: `/r/${i++}` }).catch(() => ({ status: 0 }));
        statuses.push(r.status);
      }
    }),
  );
  return statuses;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('rotation under load', () => {
  it('certificate rotation (rotateNow on both sides, twice) while requests run loses no request', async () => {
    const [webId, apiId] = await Promise.all([identity('web'), identity('api')]);
    const sidecars: Sidecar[] = [];
    try {
      const srv = await startSidecar(apiId, [app.port]);
      const cli = await startSidecar(webId);
      sidecars.push(srv, cli);
      const m = apiMesh(app.port, srv.inbound, { identities: ['spiffe://mesh.test/ns/default/sa/api'] });
      srv.plane.update(m);
      cli.plane.update(m);
      const stop = (async () => {
        await sleep(200);
        for (let round = 0; round < 2; round++) {
          await Promise.all([webId.rotateNow(), apiId.rotateNow()]);
          await sleep(250);
        }
      })();
      const statuses = await load(cli.outbound, 4, stop);
      expect(statuses.length).toBeGreaterThan(20);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      expect(cli.contexts?.generation).toBe(2);
      expect(srv.contexts?.generation).toBe(2);
      // New connections kept being made across the rotations (full handshakes with the new certificates).
      expect(await metricValue(cli.registry, 'skein_tls_handshakes_total', { direction: 'outbound', result: 'ok' })).toBeGreaterThan(2);
    } finally {
      await Promise.all(sidecars.map((s) => s.close()));
      webId.stop();
      apiId.stop();
    }
  });

  it('root rotation with an overlapping trust bundle loses no request', async () => {
    const [oldCa, newCa] = await Promise.all([testCa('mesh.test'), testCa('mesh.test')]);
    const sidecars: Sidecar[] = [];
    try {
      const both = [...oldCa.ca.trustBundle(), ...newCa.ca.trustBundle()];
      const serverSource = new StaticSource(await oldCa.leaf('default', 'api'));
      const clientSource = new StaticSource(await oldCa.leaf('default', 'web'));
      const srv = await startSidecar(serverSource, [app.port]);
      const cli = await startSidecar(clientSource);
      sidecars.push(srv, cli);
      const m = apiMesh(app.port, srv.inbound);
      srv.plane.update(m);
      cli.plane.update(m);
      // Prepared up front so every step is a plain swap: (1) both trust both roots, (2) the server moves to the new
      // root, (3) the client does, (4) the old root leaves both bundles.
      const steps = [
        [await oldCa.leaf('default', 'api', { bundle: both }), await oldCa.leaf('default', 'web', { bundle: both })],
        [await newCa.leaf('default', 'api', { bundle: both }), undefined],
        [undefined, await newCa.leaf('default', 'web', { bundle: both })],
        [await newCa.leaf('default', 'api'), await newCa.leaf('default', 'web')],
      ] as const;
      const stop = (async () => {
        await sleep(150);
        for (const [s, c] of steps) {
          if (s) serverSource.rotate(s);
          if (c) clientSource.rotate(c);
          await sleep(150);
        }
      })();
      const statuses = await load(cli.outbound, 4, stop);
      expect(statuses.length).toBeGreaterThan(20);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      // After the old root is gone, fresh connections still work (made with new-root certificates only).
      const handshakes = async () =>
        (await metricValue(cli.registry, 'skein_tls_handshakes_total', { direction: 'outbound', result: 'ok' })) +
        (await metricValue(cli.registry, 'skein_tls_handshakes_total', { direction: 'outbound', result: 'resumed' }));
      const before = await handshakes();
      // Every 3rd response closes its connection: 15 requests outlast the 4 pooled ones.
      for (let i = 0; i < 15; i++) expect((await request(cli.outbound, { host: 'api.default', path: `/after/${i}` })).status).toBe(200);
      expect(await handshakes()).toBeGreaterThan(before);
    } finally {
      await Promise.all(sidecars.map((s) => s.close()));
      await Promise.all([oldCa.close(), newCa.close()]);
    }
  });
});
