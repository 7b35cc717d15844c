import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { CertificateLedger, requesterOf } from '../../../control-plane/ca/ledger.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../../control-plane/ca/authority.ts';
import { addCertificateService } from '../../../control-plane/ca/service.ts';
import { controlPlaneSpiffeId, ServingCertificateProvider } from '../../../control-plane/ca/serving.ts';
import { DirectoryCaStore } from '../../../control-plane/ca/store.ts';
import { BootstrapTokenVerifier, loadOrCreateTokenSecret, mintBootstrapToken } from '../../../control-plane/ca/tokens.ts';
import { type CertificateServiceClient, grpcDefinitions } from '../../../proto/index.ts';
import type { CertificateResponse__Output } from '../../../proto/generated/skein/ca/v1/CertificateResponse.ts';
import { makeCsr, tamperCsr } from './csr-helper.ts';

let dir: string;
let server: grpc.Server;
let serving: ServingCertificateProvider;
let client: CertificateServiceClient;
let secret: Buffer;
const issuedIds: string[] = [];
let ledger: CertificateLedger;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-ca-svc-'));
  const caDir = join(dir, 'ca');
  const authority = await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new DirectoryCaStore(caDir) });
  secret = await loadOrCreateTokenSecret(caDir);
  serving = await ServingCertificateProvider.start(authority, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  ledger = new CertificateLedger(new Registry(), authority);
  server = new grpc.Server();
  addCertificateService(server, {
    authority,
    verifier: new BootstrapTokenVerifier(secret),
    onIssued: (issued, identity, requester) => {
      issuedIds.push(issued.spiffeId);
      ledger.issued(issued, requesterOf(requester, identity.namespace)); // as control-plane/main.ts wires it
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', serving.credentials(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const expected = controlPlaneSpiffeId('mesh.test');
  const creds = grpc.credentials.createSsl(Buffer.from(serving.current().trustBundlePem), null, null, {
    checkServerIdentity: (_host, cert) =>
      cert.subjectaltname?.split(', ').includes(`URI:${expected}`) ? undefined : new Error(`server is not ${expected}`),
  });
  const Ctor = grpcDefinitions().skein.ca.v1.CertificateService;
  client = new Ctor(`127.0.0.1:${port}`, creds, { 'grpc.ssl_target_name_override': 'localhost' });
});

afterAll(async () => {
  client?.close();
  serving?.stop();
  await new Promise<void>((r) => (server ? server.tryShutdown(() => r()) : r()));
  await rm(dir, { recursive: true, force: true });
});

function call(csr: string, token?: string, validitySeconds = 0, requester = '') {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return new Promise<CertificateResponse__Output>((resolve, reject) =>
    client.CreateCertificate({ csr, validity_seconds: validitySeconds, requester }, md, (err, res) => (err || !res ? reject(err) : resolve(res))),
  );
}

const token = (ns = 'shop', sa = 'cart', ttlMs?: number, now?: Date) =>
  mintBootstrapToken(secret, { namespace: ns, serviceAccount: sa, ttlMs, now }).token;

describe('CertificateService over TLS', () => {
  it('token -> CSR -> leaf with the proven SPIFFE ID, chained to the trust bundle', async () => {
    const res = await call(makeCsr().csrPem, token(), 3600);
    expect(res.cert_chain).toHaveLength(1);
    const leaf = new X509Certificate(res.cert_chain[0] ?? '');
    expect(leaf.subjectAltName).toBe('URI:spiffe://mesh.test/ns/shop/sa/cart');
    expect(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()).toBe(3600_000 + 60_000);
    expect(res.trust_bundle).toHaveLength(1);
    expect(leaf.verify(new X509Certificate(res.trust_bundle[0] ?? '').publicKey)).toBe(true);
    expect(issuedIds).toContain('spiffe://mesh.test/ns/shop/sa/cart');
  });

  it('remembers which proxy got which certificate, for skein proxy-status', async () => {
    const node = 'sidecar~10.0.0.7~cart-1.shop~shop.svc.cluster.local';
    const res = await call(makeCsr().csrPem, token(), 7200, node);
    const leaf = new X509Certificate(res.cert_chain[0] ?? '');
    const record = ledger.lookup(node);
    expect(record?.spiffeId).toBe('spiffe://mesh.test/ns/shop/sa/cart');
    // X.509 keeps whole seconds.
    expect(Math.floor(Date.parse(record?.notAfter ?? '') / 1000)).toBe(Date.parse(leaf.validTo) / 1000);
    expect(ledger.lookup('someone-else')).toBeUndefined();
    // A shop token cannot pass a certificate off as another namespace's proxy's.
    const other = 'sidecar~10.0.0.8~web-1.demo~demo.svc.cluster.local';
    await call(makeCsr().csrPem, token(), 60, other);
    expect(ledger.lookup(other)).toBeUndefined();
  });

  it('UNAUTHENTICATED without a token, with a forged one, or an expired one', async () => {
    const csr = makeCsr().csrPem;
    await expect(call(csr)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining('Bearer') });
    await expect(call(csr, 'skein1.e30.AAAA')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    const expired = token('shop', 'cart', 1000, new Date(Date.now() - 10_000));
    await expect(call(csr, expired)).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
      details: expect.stringContaining('expired'),
    });
  });

  it('PERMISSION_DENIED when the CSR asks for an identity the token does not prove', async () => {
    const csr = makeCsr(['spiffe://mesh.test/ns/kube-system/sa/admin']).csrPem;
    await expect(call(csr, token())).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: expect.stringContaining('token proves spiffe://mesh.test/ns/shop/sa/cart'),
    });
  });

  it('INVALID_ARGUMENT for a tampered or malformed CSR, or a negative validity', async () => {
    await expect(call(tamperCsr(makeCsr().csrPem), token())).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringContaining('signature does not verify'),
    });
    await expect(call('not a csr', token())).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(call(makeCsr().csrPem, token(), -5)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });
});
