// Test helper: a workload's RSA key and a PEM CSR built with node-forge, optionally asking for URI SANs.
import { generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';

export interface TestCsr {
  readonly keyPem: string;
  readonly csrPem: string;
}

export function makeCsr(uris: readonly string[] = [], bits = 2048): TestCsr {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'organizationName', value: 'test' }]);
  if (uris.length > 0) {
    csr.setAttributes([
      { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: uris.map((value) => ({ type: 6, value })) }] },
    ]);
  }
  csr.sign(key, forge.md.sha256.create());
  return { keyPem, csrPem: forge.pki.certificationRequestToPem(csr) };
}

/** The same CSR with one byte of its signed content changed (organization "test" -> "tezt"): the signature breaks. */
export function tamperCsr(csrPem: string): string {
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const at = der.indexOf(Buffer.from('test'));
  if (at < 0) throw new Error('tamperCsr: the CSR has no "test" organization to alter');
  der[at + 2] = 'z'.charCodeAt(0);
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}-----END CERTIFICATE REQUEST-----\n`;
}
