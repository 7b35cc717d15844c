// CSR -> leaf: verifies a PEM CSR and issues a short-lived leaf whose only URI SAN is the caller's proven SPIFFE ID.
import { isIP } from 'node:net';
import forge from 'node-forge';
import type { CertificateAuthority } from './authority.ts';
import { BACKDATE_MS } from './authority.ts';
import { CaConfigError, CsrError, IdentityMismatchError } from './errors.ts';
import { randomSerial } from './x509.ts';
import type { WorkloadIdentity } from './spiffe.ts';

const HOUR_MS = 3600 * 1000;
export const DEFAULT_LEAF_TTL_MS = 24 * HOUR_MS;
export const MAX_LEAF_TTL_MS = 7 * 24 * HOUR_MS;
export const MIN_LEAF_TTL_MS = 60_000;
export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;

export { parseSpiffeId, type WorkloadIdentity } from './spiffe.ts';

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$/;

/** What is wrong with a namespace / service-account pair (names Kubernetes would refuse), or undefined if fine. */
export function identityProblem(id: WorkloadIdentity): string | undefined {
  if (id.namespace.length > 63 || !LABEL.test(id.namespace)) {
    return `namespace "${id.namespace}" is not a valid Kubernetes namespace name`;
  }
  if (id.serviceAccount.length > 253 || !SUBDOMAIN.test(id.serviceAccount)) {
    return `service account "${id.serviceAccount}" is not a valid Kubernetes service-account name`;
  }
  return undefined;
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>`, refusing names Kubernetes would refuse (so no '/' or '..' can sneak in). */
export function spiffeIdFor(trustDomain: string, id: WorkloadIdentity): string {
  if (!TRUST_DOMAIN.test(trustDomain)) throw new CaConfigError(`trust domain "${trustDomain}" is not a DNS-like name`);
  const problem = identityProblem(id);
  if (problem) throw new CaConfigError(problem);
  return `spiffe://${trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

export interface VerifiedCsr {
  readonly publicKey: forge.pki.rsa.PublicKey;
  readonly keyBits: number;
  /** URI SANs the CSR asks for (never copied into the leaf; only compared with the proven identity). */
  readonly requestedUris: readonly string[];
}

interface AltName {
  type: number;
  value?: string;
}

/** Parses a PEM CSR and checks its self-signature and key size; throws CsrError saying what is wrong. */
export function verifyCsr(csrPem: string): VerifiedCsr {
  if (typeof csrPem !== 'string' || !csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
    throw new CsrError('csr: expected a PEM "CERTIFICATE REQUEST" block');
  }
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromPem(csrPem);
  } catch (err) {
    throw new CsrError(`csr: cannot parse (${(err as Error).message}); only RSA keys are accepted`, { cause: err });
  }
  let valid = false;
  try {
    valid = csr.verify();
  } catch (err) {
    throw new CsrError(`csr: signature cannot be checked (${(err as Error).message})`, { cause: err });
  }
  if (!valid) throw new CsrError('csr: signature does not verify: the request was altered or not signed by its key');
  const publicKey = csr.publicKey as forge.pki.rsa.PublicKey | null;
  if (!publicKey || typeof publicKey.n?.bitLength !== 'function') throw new CsrError('csr: the public key is not RSA');
  const keyBits = publicKey.n.bitLength();
  if (keyBits < MIN_RSA_BITS || keyBits > MAX_RSA_BITS) {
    throw new CsrError(`csr: RSA key of ${keyBits} bits; use ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits`);
  }
  const requestedUris: string[] = [];
  const attr = csr.getAttribute({ name: 'extensionRequest' }) as { extensions?: { name?: string; altNames?: AltName[] }[] } | null;
  for (const ext of attr?.extensions ?? []) {
    if (ext.name !== 'subjectAltName') continue;
    for (const alt of ext.altNames ?? []) if (alt.type === 6 && alt.value) requestedUris.push(alt.value);
  }
  return { publicKey, keyBits, requestedUris };
}

export interface IssueOptions {
  readonly identity: WorkloadIdentity;
  /** Requested lifetime; 0 or absent means 24 h; more than 7 days is cut to 7 days; never beyond the issuer. */
  readonly ttlMs?: number;
  /** Extra SANs, only for the control plane's own serving certificate (never taken from a CSR). */
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
}

export interface IssuedCertificate {
  /** PEM: the leaf first, then intermediates. */
  readonly certChain: readonly string[];
  readonly trustBundle: readonly string[];
  readonly spiffeId: string;
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** The lifetime to issue for a requested one (ms); throws for a negative request. */
export function effectiveTtlMs(requestedMs: number | undefined): number {
  if (requestedMs === undefined || requestedMs === 0) return DEFAULT_LEAF_TTL_MS;
  if (!Number.isFinite(requestedMs) || requestedMs < 0) throw new CsrError(`validity: ${requestedMs} ms is not a lifetime`);
  return Math.min(Math.max(requestedMs, MIN_LEAF_TTL_MS), MAX_LEAF_TTL_MS);
}

/** Issues a leaf for `publicKey` whose only URI SAN is the identity's SPIFFE ID (server and client auth). */
export function issueLeaf(ca: CertificateAuthority, publicKey: forge.pki.rsa.PublicKey, options: IssueOptions): IssuedCertificate {
  const id = spiffeIdFor(ca.trustDomain, options.identity);
  const now = ca.now().getTime();
  const notBefore = new Date(now - BACKDATE_MS);
  const notAfter = new Date(Math.min(now + effectiveTtlMs(options.ttlMs), ca.issuerNotAfter().getTime()));
  if (notAfter.getTime() <= now) throw new CaConfigError('the issuing CA has expired: rotate the root');
  const altNames: Record<string, unknown>[] = [{ type: 6, value: id }];
  for (const dns of options.dnsNames ?? []) altNames.push({ type: 2, value: dns });
  for (const ip of options.ipAddresses ?? []) {
    if (!isIP(ip)) throw new CaConfigError(`ipAddresses: "${ip}" is not an IP address`);
    altNames.push({ type: 7, ip });
  }
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = randomSerial();
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject([]); // SPIFFE X.509-SVID: the identity is the URI SAN, which is therefore critical
  const pem = ca.sign(cert, [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  return {
    certChain: [pem, ...ca.chain()],
    trustBundle: ca.trustBundle(),
    spiffeId: id,
    serial: cert.serialNumber,
    notBefore,
    notAfter,
  };
}

/**
 * Verifies `csrPem` and issues a leaf for the proven `identity`. The CSR's own SANs are ignored, except that a CSR
 * naming a different SPIFFE ID is refused (IdentityMismatchError), so a confused client learns it early.
 */
export function issueFromCsr(
  ca: CertificateAuthority,
  csrPem: string,
  identity: WorkloadIdentity,
  ttlMs?: number,
): IssuedCertificate {
  const csr = verifyCsr(csrPem);
  const proven = spiffeIdFor(ca.trustDomain, identity);
  const other = csr.requestedUris.find((uri) => uri !== proven);
  if (other !== undefined) {
    throw new IdentityMismatchError(`csr asks for ${other} but the token proves ${proven}`);
  }
  return issueLeaf(ca, csr.publicKey, { identity, ttlMs: effectiveTtlMs(ttlMs) });
}
