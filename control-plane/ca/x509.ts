// node-forge helpers shared by the CA files: RSA keys from Node's crypto, random serials, PEM bundles, CA templates.
import { generateKeyPair, randomBytes, X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { CaConfigError } from './errors.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

/** RSA key size for roots, intermediates and leaves (node-forge signs and verifies RSA only). */
export const RSA_BITS = 2048;

export interface PemKeyPair {
  readonly keyPem: string;
  readonly publicKeyPem: string;
}

/** A fresh RSA key made by Node's crypto (native, off the event loop), as PKCS#8 PEM. */
export async function generateRsaKey(bits = RSA_BITS): Promise<PemKeyPair> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', { modulusLength: bits });
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}

/** Parses an RSA private key PEM into node-forge's form; `where` names its source in the error. */
export function forgePrivateKey(keyPem: string, where: string): forge.pki.rsa.PrivateKey {
  try {
    return forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  } catch (err) {
    throw new CaConfigError(
      `${where}: not an RSA private key in PEM form (the CA signs with RSA only; EC keys are not supported)`,
      { cause: err },
    );
  }
}

/** Parses a certificate PEM into node-forge's form; `where` names its source in the error. */
export function forgeCertificate(certPem: string, where: string): forge.pki.Certificate {
  try {
    return forge.pki.certificateFromPem(certPem);
  } catch (err) {
    throw new CaConfigError(`${where}: not a PEM certificate with an RSA key (${(err as Error).message})`, {
      cause: err,
    });
  }
}

export function publicKeyOf(key: forge.pki.rsa.PrivateKey): forge.pki.rsa.PublicKey {
  return forge.pki.setRsaPublicKey(key.n, key.e);
}

/** A positive random 128-bit serial number in hex (RFC 5280 allows up to 20 octets). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // keep the DER integer positive
  if (bytes[0] === 0) bytes[0] = 0x01; // and minimal (no leading zero octet)
  return bytes.toString('hex');
}

/** Splits a PEM bundle into its certificates (each a PEM string), skipping anything else. */
export function splitPemCertificates(bundle: string): string[] {
  const matches = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return matches.map((m) => `${m}\n`);
}

/** A certificate as PEM with plain "\n" line ends (node-forge writes "\r\n"). */
export function toPem(cert: forge.pki.Certificate): string {
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
}

/** Drops certificates already listed (by SHA-256 fingerprint), keeping order. */
export function dedupeCertificates(pems: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const pem of pems) {
    const fp = new X509Certificate(pem).fingerprint256;
    if (seen.has(fp)) continue;
    seen.add(fp);
    out.push(pem.replace(/\r\n/g, '\n'));
  }
  return out;
}

/** The hex subject key identifier a certificate carries, or one computed from its key. */
export function subjectKeyIdHex(cert: forge.pki.Certificate): string {
  const ext = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  if (ext?.subjectKeyIdentifier) return ext.subjectKeyIdentifier;
  return forge.util.bytesToHex(cert.generateSubjectKeyIdentifier().getBytes());
}

export interface CaTemplate {
  readonly subjectCommonName: string;
  readonly organization: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** 0 for an intermediate that only signs leaves; undefined for a root. */
  readonly pathLen?: number;
}

/** An unsigned certificate: the fields plus the extensions to set once the issuer is known. */
export interface Unsigned {
  readonly cert: forge.pki.Certificate;
  readonly extensions: readonly Record<string, unknown>[];
}

/** Builds an unsigned CA certificate for `publicKey`: basicConstraints CA, keyCertSign + cRLSign, SKI. */
export function caCertificate(publicKey: forge.pki.rsa.PublicKey, t: CaTemplate): Unsigned {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = randomSerial();
  cert.validity.notBefore = t.notBefore;
  cert.validity.notAfter = t.notAfter;
  cert.setSubject([
    { name: 'organizationName', value: t.organization },
    { name: 'commonName', value: t.subjectCommonName },
  ]);
  const basic: Record<string, unknown> = { name: 'basicConstraints', cA: true, critical: true };
  if (t.pathLen !== undefined) basic.pathLenConstraint = t.pathLen;
  const extensions = [
    basic,
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ];
  return { cert, extensions };
}
