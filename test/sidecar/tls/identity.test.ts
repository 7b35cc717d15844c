// Tests the workload identity: certificates from the real CertificateService, renewal, rotation timing, tokens.
import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../../control-plane/ca/authority.ts';
import { addCertificateService } from '../../../control-plane/ca/service.ts';
import { ServingCertificateProvider } from '../../../control-plane/ca/serving.ts';
import { DirectoryCaStore, ROOT_CERT_FILE, ROOT_KEY_FILE, TRUST_BUNDLE_FILE } from '../../../control-plane/ca/store.ts';
import { BootstrapTokenVerifier, loadOrCreateTokenSecret, mintBootstrapToken } from '../../../control-plane/ca/tokens.ts';
import { type TlsMaterial, TlsContexts } from '../../../sidecar/tls/contexts.ts';
import { checkToken, rotationDelayMs, WorkloadIdentity } from '../../../sidecar/tls/identity.ts';
import { CONTROL_PLANE_TLS_OPTIONS, controlPlaneChannelCredentials, controlPlaneSpiffeId } from '../../../sidecar/tls/control-plane-credentials.ts';
import { registerCertificateMetrics } from '../../../sidecar/tls/metrics.ts';
import { testCa } from './mesh-helper.ts';

let dir: string;
let server: grpc.Server;
let serving: ServingCertificateProvider;
let address: string;
let secret: Buffer;
let refusals = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-identity-'));
  const caDir = join(dir, 'ca');
  const authority = await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new DirectoryCaStore(caDir) });
  secret = await loadOrCreateTokenSecret(caDir);
  serving = await ServingCertificateProvider.start(authority);
  server = new grpc.Server();
  addCertificateService(server, { authority, verifier: new BootstrapTokenVerifier(secret), onRefused: () => refusals++ });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', serving.credentials(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(async () => {
  serving?.stop();
  await new Promise<void>((r) => (server ? server.tryShutdown(() => r()) : r()));
  await rm(dir, { recursive: true, force: true });
});

async function tokenFile(name: string, ns = 'shop', sa = 'cart'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `${mintBootstrapToken(secret, { namespace: ns, serviceAccount: sa }).token}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
  return path;
}

describe('WorkloadIdentity against the real CertificateService', () => {
  it('gets a certificate for the identity its token proves, keeps the key local, and rotates on demand', async () => {
    const identity = await WorkloadIdentity.start({
      caAddress: address,
      caRootPem: serving.current().trustBundlePem,
      trustDomain: 'mesh.test',
      tokenFile: await tokenFile('token-a'),
      validitySeconds: 3600,
    });
    try {
      const first = identity.current();
      expect(first.spiffeId).toBe('spiffe://mesh.test/ns/shop/sa/cart');
      const leaf = new X509Certificate(first.certChainPem[0] ?? '');
      expect(leaf.subjectAltName).toBe('URI:spiffe://mesh.test/ns/shop/sa/cart');
      expect(first.keyPem).toContain('PRIVATE KEY');
      expect(identity.expiryTimestampSeconds()).toBe(Math.floor(new Date(leaf.validTo).getTime() / 1000));

      const registry = new Registry();
      registerCertificateMetrics(registry, identity);
      expect(await registry.metrics()).toContain(`skein_sidecar_cert_expiry_timestamp_seconds ${identity.expiryTimestampSeconds()}`);

      const contexts = new TlsContexts(identity);
      const rotated: TlsMaterial[] = [];
      identity.onRotate((m) => rotated.push(m));
      const second = await identity.rotateNow();
      expect(rotated).toEqual([second]);
      expect(second.keyPem).not.toBe(first.keyPem);
      expect(new X509Certificate(second.certChainPem[0] ?? '').serialNumber).not.toBe(leaf.serialNumber);
      expect(identity.current()).toBe(second);
      expect(contexts.generation).toBe(1); // the data path's contexts were rebuilt from the new certificate
      contexts.close();
    } finally {
      identity.stop();
    }
  });

  it('renews on its current certificate once its bootstrap token has expired or is gone', async () => {
    const path = await tokenFile('token-renew');
    const identity = await WorkloadIdentity.start({ caAddress: address, caRootPem: serving.current().trustBundlePem, trustDomain: 'mesh.test', tokenFile: path, validitySeconds: 3600 });
    try {
      // The token expired a day ago.
      const expired = mintBootstrapToken(secret, { namespace: 'shop', serviceAccount: 'cart', ttlMs: 60_000, now: new Date(Date.now() - 86_400_000) });
      await writeFile(path, `${expired.token}\n`);
      const renewed = await identity.rotateNow();
      expect(renewed.spiffeId).toBe('spiffe://mesh.test/ns/shop/sa/cart');
      await rm(path);
      expect((await identity.rotateNow()).spiffeId).toBe('spiffe://mesh.test/ns/shop/sa/cart');
    } finally {
      identity.stop();
    }
  });

  it('renews on its certificate across control-plane restarts and a root rotation announced in its trust bundle', async () => {
    const base = await mkdtemp(join(tmpdir(), 'skein-rotation-'));
    const caDir = join(base, 'ca');
    const nextDir = join(base, 'next');
    let running: { server: grpc.Server; serving: ServingCertificateProvider } | undefined;
    let port = 0;
    /** (Re)starts the control plane's CA on `caDir`, on the same port each time: a new intermediate under its root. */
    const restart = async (): Promise<void> => {
      if (running) {
        running.serving.stop();
        running.server.forceShutdown();
      }
      const authority = await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new DirectoryCaStore(caDir) });
      const servingNow = await ServingCertificateProvider.start(authority);
      const s = new grpc.Server();
      addCertificateService(s, { authority, verifier: new BootstrapTokenVerifier(secret) });
      port = await new Promise<number>((resolve, reject) => s.bindAsync(`127.0.0.1:${port}`, servingNow.credentials(), (err, p) => (err ? reject(err) : resolve(p))));
      running = { server: s, serving: servingNow };
    };
    const file = (d: string, name: string) => readFile(join(d, name), 'utf8');
    let identity: WorkloadIdentity | undefined;
    try {
      await restart();
      const rootPem = running!.serving.current().trustBundlePem;
      const path = await tokenFile('token-rotation');
      identity = await WorkloadIdentity.start({ caAddress: `127.0.0.1:${port}`, caRootPem: rootPem, trustDomain: 'mesh.test', tokenFile: path, validitySeconds: 3600 });
      await rm(path); // from now on only the certificate proves who the sidecar is
      await restart();
      expect((await identity.rotateNow()).spiffeId).toBe('spiffe://mesh.test/ns/shop/sa/cart');

      // A new root is announced in the trust bundle, then swapped in: the old one stays in the bundle.
      await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new DirectoryCaStore(nextDir) });
      const [oldCert, oldKey, newCert, newKey] = await Promise.all([file(caDir, ROOT_CERT_FILE), file(caDir, ROOT_KEY_FILE), file(nextDir, ROOT_CERT_FILE), file(nextDir, ROOT_KEY_FILE)]);
      await writeFile(join(caDir, TRUST_BUNDLE_FILE), newCert);
      await restart();
      expect((await identity.rotateNow()).trustBundlePem).toHaveLength(2);
      await writeFile(join(caDir, ROOT_CERT_FILE), newCert);
      await writeFile(join(caDir, ROOT_KEY_FILE), newKey, { mode: 0o600 });
      await writeFile(join(caDir, TRUST_BUNDLE_FILE), oldCert);
      await restart();
      const rotated = await identity.rotateNow(); // --ca-root-file still names only the old root
      const top = new X509Certificate(rotated.certChainPem.at(-1) ?? '');
      expect(top.checkIssued(new X509Certificate(newCert))).toBe(true);
      expect(oldKey).not.toBe(newKey);
    } finally {
      identity?.stop();
      running?.serving.stop();
      running?.server.forceShutdown();
      await rm(base, { recursive: true, force: true });
    }
  });

  it('gives other channels to the control plane (xDS over TLS) its checks and the current certificate', async () => {
    const identity = await WorkloadIdentity.start({ caAddress: address, caRootPem: serving.current().trustBundlePem, trustDomain: 'mesh.test', tokenFile: await tokenFile('token-channel'), validitySeconds: 3600 });
    const call = (creds: grpc.ChannelCredentials): Promise<number> => {
      const client = new grpc.Client(address, creds, CONTROL_PLANE_TLS_OPTIONS);
      return new Promise<number>((resolve) => {
        // No token: the CA answers only a caller whose certificate proves an identity (here with "no CSR").
        client.makeUnaryRequest('/skein.ca.v1.CertificateService/CreateCertificate', () => Buffer.alloc(0), (b: Buffer) => b, {}, (err) => {
          client.close();
          resolve(err?.code ?? 0);
        });
      });
    };
    try {
      const creds = controlPlaneChannelCredentials(identity, identity.caRootPem(), controlPlaneSpiffeId('mesh.test'));
      expect(await call(creds)).toBe(grpc.status.INVALID_ARGUMENT); // identity proven by the certificate; the CSR is what is wrong
      await identity.rotateNow();
      expect(await call(creds)).toBe(grpc.status.INVALID_ARGUMENT);
      // A control plane with another SPIFFE ID is refused in the handshake.
      expect(await call(controlPlaneChannelCredentials(identity, identity.caRootPem(), 'spiffe://mesh.test/ns/x/sa/impostor'))).toBe(grpc.status.UNAVAILABLE);
    } finally {
      identity.stop();
    }
  });

  it('does not renew on a certificate the CA did not issue: a self-made one with the SPIFFE ID is refused', async () => {
    const other = await testCa('mesh.test');
    try {
      const forged = await other.leaf('shop', 'cart');
      const client = new grpc.Client(address, grpc.credentials.createSsl(Buffer.from(serving.current().trustBundlePem), Buffer.from(forged.keyPem), Buffer.from(forged.certChainPem.join('')), { checkServerIdentity: () => undefined }), { 'grpc.ssl_target_name_override': 'skein-control-plane' });
      const { status } = await new Promise<{ status: number }>((resolve) => {
        client.makeUnaryRequest('/skein.ca.v1.CertificateService/CreateCertificate', () => Buffer.alloc(0), (b: Buffer) => b, {}, (err) => resolve({ status: err?.code ?? 0 }));
      });
      client.close();
      expect(status).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      await other.close();
    }
  });

  it('refuses a control plane that does not present the expected SPIFFE ID, and keeps retrying until aborted', async () => {
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 400);
    const err = await WorkloadIdentity.start(
      {
        caAddress: address,
        caRootPem: serving.current().trustBundlePem,
        trustDomain: 'mesh.test',
        controlPlaneId: 'spiffe://mesh.test/ns/skein-system/sa/impostor',
        tokenFile: await tokenFile('token-b'),
        retryBaseMs: 20,
        retryCapMs: 50,
      },
      abort.signal,
    ).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('SKEIN_TLS_CERT_FETCH');
    expect((err as Error).message).toMatch(/no certificate yet/);
  });

  it('names --ca-root-file when the control plane\'s certificate does not chain to it', async () => {
    const other = await testCa('other.test');
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 400);
    const err = await WorkloadIdentity.start(
      {
        caAddress: address,
        caRootPem: other.ca.trustBundle().join(''),
        caRootFile: '/etc/skein/wrong-root.pem',
        trustDomain: 'mesh.test',
        tokenFile: await tokenFile('token-c'),
        retryBaseMs: 20,
        retryCapMs: 50,
      },
      abort.signal,
    ).catch((e: unknown) => e);
    await other.close();
    expect((err as Error).message).toContain('does not chain to the root in /etc/skein/wrong-root.pem');
    expect((err as Error).message).not.toMatch(/Resolution note/);
  });

  it('reports a token the CA refuses', async () => {
    const bad = join(dir, 'token-bad');
    await writeFile(bad, 'skein1.e30.AAAA\n', { mode: 0o600 });
    const before = refusals;
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    const err = await WorkloadIdentity.start(
      { caAddress: address, caRootPem: serving.current().trustBundlePem, trustDomain: 'mesh.test', tokenFile: bad, retryBaseMs: 20 },
      abort.signal,
    ).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/UNAUTHENTICATED|signature does not match/);
    expect(refusals).toBeGreaterThan(before);
  });
});

describe('checkToken', () => {
  const token = 'skein1.eyJucyI6ImRlbW8ifQ.c2lnbmF0dXJl';

  it('takes one token, surrounding whitespace trimmed', () => {
    expect(checkToken('t', `${token}\n`)).toBe(token);
    expect(checkToken('t', `  ${token}\r\n`)).toBe(token);
  });

  it("refuses a file with npm's banner in front, naming the cause and never quoting the token", () => {
    const captured = `\n> skein@0.1.0 skein\n> node cli/skein.ts token --namespace demo --service-account ws\n\n${token}\n`;
    let message = '';
    try {
      checkToken('/tmp/ws.token', captured);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('/tmp/ws.token does not hold one token');
    expect(message).toContain('npm run -s skein');
    expect(message).not.toContain('eyJ');
    expect(() => checkToken('t', ' \n')).toThrow(/is empty/);
    expect(() => checkToken('t', 'two words')).toThrow(/does not hold one token/);
  });
});

describe('rotationDelayMs', () => {
  it('rotates at 50% of the lifetime, plus or minus 10% of that', () => {
    const nb = new Date(0);
    const na = new Date(100_000);
    expect(rotationDelayMs(nb, na, 0, () => 0.5)).toBe(50_000);
    expect(rotationDelayMs(nb, na, 0, () => 0)).toBe(45_000);
    expect(rotationDelayMs(nb, na, 0, () => 0.999999)).toBeCloseTo(55_000, -1);
    expect(rotationDelayMs(nb, na, 60_000, () => 0.5)).toBe(0);
  });
});
