import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../../control-plane/ca/authority.ts';
import { CsrError, IdentityMismatchError } from '../../../control-plane/ca/errors.ts';
import { DEFAULT_LEAF_TTL_MS, issueFromCsr, MAX_LEAF_TTL_MS, parseSpiffeId, verifyCsr } from '../../../control-plane/ca/issue.ts';
import { createServingCertificate } from '../../../control-plane/ca/serving.ts';
import { DirectoryCaStore } from '../../../control-plane/ca/store.ts';
import { makeCsr, tamperCsr } from './csr-helper.ts';

let dir: string;
let ca: CertificateAuthority;
const identity = { namespace: 'shop', serviceAccount: 'cart' };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-issue-'));
  ca = await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new DirectoryCaStore(join(dir, 'ca')) });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('issueFromCsr', () => {
  it('issues a leaf whose only SAN is the proven SPIFFE ID, for server and client auth, under the root', () => {
    const { csrPem, keyPem } = makeCsr();
    const issued = issueFromCsr(ca, csrPem, identity);
    expect(issued.spiffeId).toBe('spiffe://mesh.test/ns/shop/sa/cart');
    const leaf = new X509Certificate(issued.certChain[0] ?? '');
    expect(leaf.subjectAltName).toBe('URI:spiffe://mesh.test/ns/shop/sa/cart');
    expect(leaf.ca).toBe(false);
    expect(leaf.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    expect(leaf.verify(new X509Certificate(ca.trustBundle()[0] ?? '').publicKey)).toBe(true);
    expect(leaf.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);

    const forgeLeaf = forge.pki.certificateFromPem(issued.certChain[0] ?? '');
    const ku = forgeLeaf.getExtension('keyUsage') as Record<string, boolean>;
    expect(ku.digitalSignature && ku.keyEncipherment && !ku.keyCertSign).toBe(true);
    const san = forgeLeaf.getExtension('subjectAltName') as { critical: boolean };
    expect(san.critical).toBe(true);
    expect(parseSpiffeId(issued.spiffeId)).toEqual({ trustDomain: 'mesh.test', ...identity });
  });

  it('lasts 24 hours by default, at most 7 days, with random serials', () => {
    const a = issueFromCsr(ca, makeCsr().csrPem, identity);
    const b = issueFromCsr(ca, makeCsr().csrPem, identity, 30 * 24 * 3600 * 1000);
    expect(a.notAfter.getTime() - a.notBefore.getTime()).toBe(DEFAULT_LEAF_TTL_MS + 60_000);
    expect(b.notAfter.getTime() - b.notBefore.getTime()).toBe(MAX_LEAF_TTL_MS + 60_000);
    expect(a.serial).not.toBe(b.serial);
    expect(a.serial).toMatch(/^[0-7][0-9a-f]{31}$/);
  });

  it('ignores nothing silently: a CSR asking for another identity is refused', () => {
    const { csrPem } = makeCsr(['spiffe://mesh.test/ns/kube-system/sa/admin']);
    const err = (() => {
      try {
        issueFromCsr(ca, csrPem, identity);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(IdentityMismatchError);
    expect((err as IdentityMismatchError).code).toBe('SKEIN_CA_IDENTITY_MISMATCH');
    expect((err as Error).message).toContain('spiffe://mesh.test/ns/kube-system/sa/admin');
  });

  it('accepts a CSR that asks for exactly the proven identity', () => {
    const issued = issueFromCsr(ca, makeCsr(['spiffe://mesh.test/ns/shop/sa/cart']).csrPem, identity);
    expect(new X509Certificate(issued.certChain[0] ?? '').subjectAltName).toBe('URI:spiffe://mesh.test/ns/shop/sa/cart');
  });

  it('refuses a tampered CSR, garbage, and a weak key with CsrError', () => {
    expect(() => verifyCsr(tamperCsr(makeCsr().csrPem))).toThrow(/signature does not verify/);
    expect(() => verifyCsr('hello')).toThrow(CsrError);
    expect(() => verifyCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n')).toThrow(CsrError);
    expect(() => verifyCsr(makeCsr([], 1024).csrPem)).toThrow(/1024 bits/);
  });
});

describe('createServingCertificate', () => {
  it('names the control plane by SPIFFE ID plus the DNS names and IPs given', async () => {
    const serving = await createServingCertificate(ca, { dnsNames: ['skein.skein-system.svc'], ipAddresses: ['127.0.0.1'] });
    const leaf = new X509Certificate(serving.certChainPem);
    expect(leaf.subjectAltName).toBe(
      'URI:spiffe://mesh.test/ns/skein-system/sa/skein-control-plane, DNS:skein.skein-system.svc, IP Address:127.0.0.1',
    );
    expect(leaf.checkPrivateKey(createPrivateKey(serving.keyPem))).toBe(true);
  });
});

