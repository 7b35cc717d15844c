// The certificate authority: a self-signed root kept in a CaStore, or an intermediate under a user-provided root.
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import forge from 'node-forge';
import { CaConfigError } from './errors.ts';
import { assertPrivateFile, type CaStore } from './store.ts';
import {
  caCertificate,
  dedupeCertificates,
  forgeCertificate,
  forgePrivateKey,
  generateRsaKey,
  publicKeyOf,
  splitPemCertificates,
  subjectKeyIdHex,
  toPem,
} from './x509.ts';
import { parseSpiffeId, type WorkloadIdentity } from './spiffe.ts';
import { logger } from '../log.ts';

const log = logger('ca');

const DAY_MS = 24 * 3600 * 1000;
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_ROOT_LIFETIME_MS = 10 * 365 * DAY_MS;
export const DEFAULT_INTERMEDIATE_LIFETIME_MS = 365 * DAY_MS;
/** Certificates start this long before "now" so peers with a slightly slow clock accept them. */
export const BACKDATE_MS = 60_000;

/** A root the user brings: the CA creates an intermediate under it (kept in memory) and issues from that. */
export interface ProvidedRoot {
  readonly certFile: string;
  /** Must be mode 0600 (or stricter). */
  readonly keyFile: string;
  /** Extra trusted roots; required when certFile is itself an intermediate of the user's PKI. */
  readonly trustBundleFile?: string;
}

export interface AuthorityOptions {
  readonly trustDomain?: string;
  /** Where the self-signed root lives (created on first start). Ignored when `providedRoot` is set. */
  readonly store?: CaStore;
  readonly providedRoot?: ProvidedRoot;
  readonly rootLifetimeMs?: number;
  readonly intermediateLifetimeMs?: number;
  readonly now?: () => Date;
}

export interface PemRoot {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Makes a new self-signed RSA root for `trustDomain` (also used by tests and by a root rotation). */
export async function createRoot(trustDomain: string, now = new Date(), lifetimeMs = DEFAULT_ROOT_LIFETIME_MS): Promise<PemRoot> {
  const { keyPem } = await generateRsaKey();
  const key = forgePrivateKey(keyPem, 'generated root key');
  const { cert, extensions } = caCertificate(publicKeyOf(key), {
    organization: 'skein',
    // A random suffix keeps subject names unique: chain building matches issuers by name (two roots during a rotation).
    subjectCommonName: `Skein root CA ${trustDomain} ${now.toISOString().slice(0, 10)} ${randomBytes(4).toString('hex')}`,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + lifetimeMs),
  });
  cert.setIssuer(cert.subject.attributes);
  cert.setExtensions([...extensions]);
  cert.sign(key, forge.md.sha256.create());
  return { certPem: toPem(cert), keyPem };
}

/** Checks a CA certificate and its key belong together, the certificate is a CA and still valid. */
function checkCaPair(certPem: string, keyPem: string, where: string, now: Date): X509Certificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw new CaConfigError(`${where}: the certificate does not parse (${(err as Error).message})`, { cause: err });
  }
  if (!x509.ca) throw new CaConfigError(`${where}: the certificate is not a CA (basicConstraints CA:TRUE missing)`);
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new CaConfigError(`${where}: the private key does not parse (${(err as Error).message}); it must be a PEM private key`, { cause: err });
  }
  if (!x509.checkPrivateKey(key)) {
    throw new CaConfigError(`${where}: the private key does not match the certificate`);
  }
  if (new Date(x509.validTo).getTime() <= now.getTime()) {
    throw new CaConfigError(`${where}: the CA certificate expired on ${x509.validTo}; rotate the root`);
  }
  return x509;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly #issuerKey: forge.pki.rsa.PrivateKey;
  readonly #issuerCert: forge.pki.Certificate;
  readonly #issuerSkiHex: string;
  #issuerX509: X509Certificate | undefined;
  readonly #chain: readonly string[];
  readonly #bundle: readonly string[];
  readonly #now: () => Date;

  private constructor(init: {
    trustDomain: string;
    issuerKey: forge.pki.rsa.PrivateKey;
    issuerCert: forge.pki.Certificate;
    chain: readonly string[];
    bundle: readonly string[];
    now: () => Date;
  }) {
    this.trustDomain = init.trustDomain;
    this.#issuerKey = init.issuerKey;
    this.#issuerCert = init.issuerCert;
    this.#issuerSkiHex = subjectKeyIdHex(init.issuerCert);
    this.#chain = Object.freeze([...init.chain]);
    this.#bundle = Object.freeze([...init.bundle]);
    this.#now = init.now;
  }

  /** Opens the CA: loads (or on first start creates) the root, or builds an intermediate under a provided root. */
  static async open(options: AuthorityOptions): Promise<CertificateAuthority> {
    const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
    const now = options.now ?? (() => new Date());
    if (options.providedRoot) return CertificateAuthority.#fromProvidedRoot(trustDomain, options.providedRoot, options, now);
    if (!options.store) throw new CaConfigError('the CA needs a store (a directory or a Secret) or a provided root');
    const store = options.store;
    let files = await store.load();
    if (!files) {
      log.debug(`no root in ${store.description}; creating one for ${trustDomain}`);
      const root = await createRoot(trustDomain, now(), options.rootLifetimeMs);
      files = await store.createIfAbsent({ rootCertPem: root.certPem, rootKeyPem: root.keyPem, extraTrustPem: '' });
    }
    const where = `root in ${store.description}`;
    checkCaPair(files.rootCertPem, files.rootKeyPem, where, now());
    const bundle = dedupeCertificates([files.rootCertPem, ...splitPemCertificates(files.extraTrustPem)]);
    log.debug(`loaded ${where}; trust bundle has ${bundle.length} root(s)`);
    return new CertificateAuthority({
      trustDomain,
      issuerKey: forgePrivateKey(files.rootKeyPem, where),
      issuerCert: forgeCertificate(files.rootCertPem, where),
      chain: [],
      bundle,
      now,
    });
  }

  static async #fromProvidedRoot(
    trustDomain: string,
    provided: ProvidedRoot,
    options: AuthorityOptions,
    now: () => Date,
  ): Promise<CertificateAuthority> {
    await assertPrivateFile(provided.keyFile);
    const rootCertPem = await readFile(provided.certFile, 'utf8');
    const rootKeyPem = await readFile(provided.keyFile, 'utf8');
    const where = `provided root ${provided.certFile}`;
    const rootX509 = checkCaPair(rootCertPem, rootKeyPem, where, now());
    const extra = provided.trustBundleFile ? splitPemCertificates(await readFile(provided.trustBundleFile, 'utf8')) : [];
    const selfIssued = rootX509.issuer === rootX509.subject && rootX509.verify(rootX509.publicKey);
    if (!selfIssued && extra.length === 0) {
      throw new CaConfigError(
        `${where} is not self-signed: give its root(s) with a trust bundle file so workloads can verify the chain`,
      );
    }
    const rootKey = forgePrivateKey(rootKeyPem, where);
    const rootCert = forgeCertificate(rootCertPem, where);

    // The intermediate's key is made here and lives only in memory; the provided root key signs it and is dropped.
    const { keyPem } = await generateRsaKey();
    const key = forgePrivateKey(keyPem, 'generated intermediate key');
    const start = now();
    const lifetime = options.intermediateLifetimeMs ?? DEFAULT_INTERMEDIATE_LIFETIME_MS;
    const notAfter = new Date(Math.min(start.getTime() + lifetime, rootCert.validity.notAfter.getTime()));
    const { cert, extensions } = caCertificate(publicKeyOf(key), {
      organization: 'skein',
      subjectCommonName: `Skein intermediate CA ${trustDomain} ${start.toISOString()}`,
      notBefore: new Date(start.getTime() - BACKDATE_MS),
      notAfter,
      pathLen: 0,
    });
    cert.setIssuer(rootCert.subject.attributes);
    cert.setExtensions([
      ...extensions,
      { name: 'authorityKeyIdentifier', keyIdentifier: forge.util.hexToBytes(subjectKeyIdHex(rootCert)) },
    ]);
    cert.sign(rootKey, forge.md.sha256.create());
    const intermediatePem = toPem(cert);
    const chain = selfIssued ? [intermediatePem] : [intermediatePem, rootCertPem];
    const bundle = dedupeCertificates(selfIssued ? [rootCertPem, ...extra] : extra);
    log.debug(`issuing from an intermediate under ${where}, valid until ${notAfter.toISOString()}`);
    return new CertificateAuthority({ trustDomain, issuerKey: key, issuerCert: cert, chain, bundle, now });
  }

  /**
   * The workload identity a leaf proves, if it is valid now (validity window, not a CA, a SPIFFE ID of this trust
   * domain) and signed by the current issuer, or by any chain to the trust bundle that TLS already verified
   * (`chainVerified`); else undefined. A sidecar renews with it when its bootstrap token has expired.
   */
  workloadOf(leafDer: Buffer, chainVerified = false): WorkloadIdentity | undefined {
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(leafDer);
    } catch {
      return undefined;
    }
    const now = this.#now().getTime();
    if (now < Date.parse(leaf.validFrom) || now > Date.parse(leaf.validTo) || leaf.ca) return undefined;
    // `chainVerified`: the TLS handshake already checked the chain the client presented against the trust bundle (a
    // leaf from an intermediate of before a restart, or of a root being rotated out, still proves its identity).
    if (!chainVerified) {
      const issuer = (this.#issuerX509 ??= new X509Certificate(toPem(this.#issuerCert)));
      if (!leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey)) return undefined;
    }
    const uris = (leaf.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
    if (uris.length !== 1) return undefined;
    const id = parseSpiffeId(uris[0] as string);
    if (id === undefined || id.trustDomain !== this.trustDomain) return undefined;
    return { namespace: id.namespace, serviceAccount: id.serviceAccount };
  }

  /** PEM certificates that follow a leaf in its chain (the intermediate(s); empty when the root signs leaves). */
  chain(): readonly string[] {
    return this.#chain;
  }

  /** PEM roots workloads must trust: the current root first, then extra roots kept during a rotation. */
  /** When the first root of the trust bundle expires: the date by which a root rotation must be done. */
  earliestRootExpiry(): Date {
    const times = this.trustBundle().map((pem) => Date.parse(new X509Certificate(pem).validTo));
    return new Date(Math.min(...times));
  }

  trustBundle(): readonly string[] {
    return this.#bundle;
  }

  /** The last moment the issuer is valid: no leaf may outlive it. */
  issuerNotAfter(): Date {
    return this.#issuerCert.validity.notAfter;
  }

  now(): Date {
    return this.#now();
  }

  /** Signs `cert` (SHA-256) as the issuer: sets issuer name, the given extensions plus authorityKeyIdentifier. */
  sign(cert: forge.pki.Certificate, extensions: readonly Record<string, unknown>[]): string {
    cert.setIssuer(this.#issuerCert.subject.attributes);
    cert.setExtensions([
      ...extensions,
      { name: 'authorityKeyIdentifier', keyIdentifier: forge.util.hexToBytes(this.#issuerSkiHex) },
    ]);
    cert.sign(this.#issuerKey, forge.md.sha256.create());
    return toPem(cert);
  }
}
