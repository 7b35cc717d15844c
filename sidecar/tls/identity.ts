// The workload's identity: a local key, a CSR sent to the control plane's CA with our token, rotation at ~50% life.
import type { KeyObject, X509Certificate as X509Cert } from 'node:crypto';
import { nodeCrypto, nodeUtil } from '../builtins.ts';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import type forgeModule from 'node-forge';
import { certificateClientConstructor, type CertificateServiceClient } from '../../proto/index.ts';
import type { CertificateResponse__Output } from '../../proto/generated/skein/ca/v1/CertificateResponse.ts';
import { SkeinSidecarError } from '../errors.ts';
import { logger } from '../log.ts';
import type { IdentitySource, TlsMaterial } from './contexts.ts';
import { checkControlPlaneIdentity, controlPlaneRoots, controlPlaneSpiffeId } from './control-plane-credentials.ts';
import { parseSpiffeId, spiffeIdOfCertificate } from './spiffe.ts';

const log = logger('tls');
const { createPrivateKey, generateKeyPair, X509Certificate } = nodeCrypto;
const generateKeyPairAsync = nodeUtil.promisify(generateKeyPair);

/** Getting or checking a workload certificate failed; the sidecar keeps retrying with backoff. */
export class CertificateFetchError extends SkeinSidecarError {
  constructor(message: string, options?: ErrorOptions) {
    super('SKEIN_TLS_CERT_FETCH', message, options);
  }
}

export interface WorkloadIdentityOptions {
  /** host:port of the control plane's TLS port (15012). */
  readonly caAddress: string;
  /** Where caRootPem came from (--ca-root-file), named when the control plane's certificate does not chain to it. */
  readonly caRootFile?: string;
  /** PEM root(s) that signed the control plane's serving certificate (the mesh root, distributed out of band). */
  readonly caRootPem: string;
  /** Our trust domain (default cluster.local): the control plane's SPIFFE ID and our leaf must be in it. */
  readonly trustDomain?: string;
  /** The SPIFFE ID the control plane must serve as (default spiffe://<td>/ns/skein-system/sa/skein-control-plane). */
  readonly controlPlaneId?: string;
  /** File with the bearer token; re-read for each request (the kubelet refreshes projected tokens in place). */
  readonly tokenFile: string;
  /** Our xDS node id, sent along so `skein proxy-status` can show this proxy's certificate. */
  readonly requester?: string;
  /** Requested lifetime in seconds; 0 = the CA's default (24 h). */
  readonly validitySeconds?: number;
  /** Backoff between failed attempts: full jitter between 0 and min(capMs, baseMs × 2^n). */
  readonly retryBaseMs?: number;
  readonly retryCapMs?: number;
  readonly requestTimeoutMs?: number;
  /** Random source in [0, 1) for jitter (tests pass a fixed one). */
  readonly random?: () => number;
}

/** The longest wait between attempts to get a certificate (as for the xDS stream): a CA back after an outage is found within it. */
const RETRY_CAP_MS = 15_000;

/** When to rotate: at 50% of the lifetime, give or take 10% of that (uniform), measured from notBefore. */
export function rotationDelayMs(notBefore: Date, notAfter: Date, now: number, random: () => number = Math.random): number {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  const fraction = 0.5 * (1 + (random() * 2 - 1) * 0.1);
  return Math.max(0, notBefore.getTime() + lifetime * fraction - now);
}

interface Issued extends TlsMaterial {
  readonly notBefore: Date;
}

/** Checks what the CA sent: our key, one SPIFFE ID in our trust domain, a chain that reaches a bundle root. */
export function checkIssued(res: CertificateResponse__Output, key: KeyObject, trustDomain: string): Omit<Issued, 'keyPem'> {
  if (res.cert_chain.length === 0) throw new CertificateFetchError('the CA answered with an empty certificate chain');
  if (res.trust_bundle.length === 0) throw new CertificateFetchError('the CA answered with an empty trust bundle');
  const chain = res.cert_chain.map((pem) => new X509Certificate(pem));
  const roots = res.trust_bundle.map((pem) => new X509Certificate(pem));
  const leaf = chain[0] as X509Cert;
  if (!leaf.checkPrivateKey(key)) throw new CertificateFetchError('the issued certificate is not for our key');
  const spiffeId = spiffeIdOfCertificate(leaf);
  if (!spiffeId || parseSpiffeId(spiffeId)?.trustDomain !== trustDomain) {
    throw new CertificateFetchError(`the issued certificate names ${spiffeId ?? 'no SPIFFE ID'}, not an ID in ${trustDomain}`);
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    const [child, parent] = [chain[i] as X509Cert, chain[i + 1] as X509Cert];
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      throw new CertificateFetchError(`certificate ${i} of the chain is not signed by certificate ${i + 1}`);
    }
  }
  const top = chain[chain.length - 1] as X509Cert;
  if (!roots.some((root) => top.checkIssued(root) && top.verify(root.publicKey))) {
    throw new CertificateFetchError('the issued chain does not lead to a root of the trust bundle');
  }
  return {
    certChainPem: [...res.cert_chain],
    trustBundlePem: [...res.trust_bundle],
    spiffeId,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
  };
}

let forgeLoaded: typeof forgeModule | undefined;

/** node-forge (node:crypto cannot write a CSR), loaded on the first CSR: ~10 MiB a sidecar without mTLS never pays. */
function nodeForge(): typeof forgeModule {
  forgeLoaded ??= createRequire(import.meta.url)('node-forge') as typeof forgeModule;
  return forgeLoaded;
}

/** A PEM CSR for `keyPem`, signed with it; it asks for no SANs (the CA names us from our token). */
export function buildCsr(keyPem: string): string {
  const forge = nodeForge();
  const key = forge.pki.privateKeyFromPem(keyPem) as forgeModule.pki.rsa.PrivateKey;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'organizationName', value: 'skein' }]);
  csr.sign(key, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/**
 * Obtains and rotates the workload certificate. The private key is made here and never leaves the process; key,
 * chain and bundle live in memory only. `start()` resolves once the first certificate is in hand.
 */
export class WorkloadIdentity implements IdentitySource {
  readonly #options: WorkloadIdentityOptions;
  readonly #trustDomain: string;
  #client: CertificateServiceClient;
  readonly #random: () => number;
  readonly #listeners = new Set<(m: TlsMaterial) => void>();
  #current: Issued | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #attempt = 0;
  #inflight: Promise<Issued> | undefined;
  #lastError: string | undefined;

  constructor(options: WorkloadIdentityOptions) {
    this.#options = options;
    this.#trustDomain = options.trustDomain ?? 'cluster.local';
    this.#random = options.random ?? Math.random;
    this.#client = this.#makeClient(undefined);
  }

  /**
   * A client of the CA. Once the sidecar holds a certificate it presents it on the TLS connection, so the CA can
   * renew on it when the bootstrap token has expired (the token file is still sent, and tried first).
   */
  #makeClient(current: TlsMaterial | undefined): CertificateServiceClient {
    const options = this.#options;
    const controlPlaneId = options.controlPlaneId ?? controlPlaneSpiffeId(this.#trustDomain);
    const key = current === undefined ? null : Buffer.from(current.keyPem);
    const chain = current === undefined ? null : Buffer.from(current.certChainPem.join(''));
    // The control plane's certificate is checked against the configured root and, once we hold a certificate, the
    // trust bundle that came with it (over a connection the root verified): a root rotation the CA announced in its
    // bundle before it swapped roots does not cut the sidecar off from renewing.
    const creds = grpc.credentials.createSsl(Buffer.from(controlPlaneRoots(options.caRootPem, current)), key, chain, {
      checkServerIdentity: checkControlPlaneIdentity(controlPlaneId, (message) => new CertificateFetchError(message)),
    });
    const Client = certificateClientConstructor();
    // A DNS-style name for SNI so an IP target does not trip Node's "SNI must not be an IP" warning.
    // grpc-js fails calls at once while its channel backs off (up to 120 s by default): a CA back after an outage
    // would be tried again only that late. Its reconnect backoff is capped like ours.
    return new Client(options.caAddress, creds, {
      'grpc.ssl_target_name_override': 'skein-control-plane',
      'grpc.initial_reconnect_backoff_ms': 1000,
      'grpc.max_reconnect_backoff_ms': RETRY_CAP_MS,
    });
  }

  /**
   * Creates the identity and waits for the first certificate (retrying with backoff until `signal` aborts);
   * `onRetry` hears each failed attempt's error.
   */
  static async start(options: WorkloadIdentityOptions, signal?: AbortSignal, onRetry?: (error: string) => void): Promise<WorkloadIdentity> {
    const identity = new WorkloadIdentity(options);
    try {
      await identity.#firstCertificate(signal, onRetry);
    } catch (err) {
      identity.stop();
      throw err;
    }
    return identity;
  }

  async #firstCertificate(signal?: AbortSignal, onRetry?: (error: string) => void): Promise<void> {
    for (;;) {
      if (signal?.aborted || this.#stopped) throw new CertificateFetchError(`no certificate yet: ${this.#lastError ?? 'aborted'}`);
      try {
        await this.rotateNow();
        return;
      } catch {
        const delay = this.#backoffMs();
        log.warn('could not get a workload certificate; retrying', { error: this.#lastError, retryInMs: delay });
        onRetry?.(`${this.#lastError ?? 'failed'} (retrying in ${Math.round(delay / 100) / 10} s)`);
        await sleep(delay, signal);
      }
    }
  }

  /** The root configured for the control plane (--ca-root-file). */
  caRootPem(): string {
    return this.#options.caRootPem;
  }

  /** The current key, chain and bundle; throws before the first certificate arrives. */
  current(): TlsMaterial {
    if (!this.#current) throw new CertificateFetchError('no workload certificate yet');
    return this.#current;
  }

  onRotate(cb: (material: TlsMaterial) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  /** The leaf's notAfter in seconds since the epoch (skein_sidecar_cert_expiry_timestamp_seconds); 0 before the first. */
  expiryTimestampSeconds(): number {
    return this.#current ? Math.floor(this.#current.notAfter.getTime() / 1000) : 0;
  }

  /** The last failure's message, if the last attempt failed. */
  lastError(): string | undefined {
    return this.#lastError;
  }

  /** Gets a new certificate now (new key) and tells listeners; concurrent calls share one request. */
  rotateNow(): Promise<TlsMaterial> {
    this.#inflight ??= this.#fetch().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #fetch(): Promise<Issued> {
    try {
      const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
      const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
      // With a certificate in hand, a missing or unreadable token file is not fatal: the CA can renew on the
      // certificate (see #makeClient). Without one, the token is the only proof.
      let token: string | undefined;
      try {
        token = checkToken(this.#options.tokenFile, await readFile(this.#options.tokenFile, 'utf8'));
      } catch (err) {
        if (this.#current === undefined) throw err;
      }
      const res = await this.#call(buildCsr(keyPem), token);
      const issued: Issued = { keyPem, ...checkIssued(res, createPrivateKey(keyPem), this.#trustDomain) };
      if (this.#stopped) return issued;
      this.#current = issued;
      // The next request (a rotation) presents this certificate.
      this.#client.close();
      this.#client = this.#makeClient(issued);
      this.#attempt = 0;
      this.#lastError = undefined;
      log.info('workload certificate issued', { spiffeId: issued.spiffeId, notAfter: issued.notAfter.toISOString() });
      this.#schedule(rotationDelayMs(issued.notBefore, issued.notAfter, Date.now(), this.#random));
      for (const cb of this.#listeners) {
        try {
          cb(issued);
        } catch (err) {
          log.error('a certificate rotation listener failed', { error: (err as Error).message });
        }
      }
      return issued;
    } catch (err) {
      this.#lastError = (err as Error).message;
      if (this.#current && !this.#stopped) {
        const delay = this.#backoffMs();
        log.warn('certificate rotation failed; keeping the current certificate and retrying', {
          error: this.#lastError,
          retryInMs: delay,
          notAfter: this.#current.notAfter.toISOString(),
        });
        this.#schedule(delay);
      }
      throw err instanceof SkeinSidecarError ? err : new CertificateFetchError(this.#lastError, { cause: err });
    }
  }

  #call(csr: string, token: string | undefined): Promise<CertificateResponse__Output> {
    const metadata = new grpc.Metadata();
    if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
    const deadline = Date.now() + (this.#options.requestTimeoutMs ?? 10_000);
    const request = { csr, validity_seconds: this.#options.validitySeconds ?? 0, requester: this.#options.requester ?? '' };
    return new Promise((resolve, reject) => {
      this.#client.CreateCertificate(request, metadata, { deadline }, (err, res) => {
        if (err) reject(new CertificateFetchError(`CreateCertificate at ${this.#options.caAddress}: ${caCallProblem(err.message, this.#options.caRootFile)}`, { cause: err }));
        else if (!res) reject(new CertificateFetchError('CreateCertificate returned no response'));
        else resolve(res);
      });
    });
  }

  #backoffMs(): number {
    const base = this.#options.retryBaseMs ?? 1000;
    const cap = this.#options.retryCapMs ?? RETRY_CAP_MS;
    const ceiling = Math.min(cap, base * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.floor(this.#random() * ceiling);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.rotateNow().catch(() => undefined); // #fetch logged it and scheduled a retry
    }, Math.min(delayMs, 2 ** 31 - 1));
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#client.close();
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Visible ASCII, no spaces: what an HTTP bearer token (and gRPC metadata) may hold. */
const TOKEN_TEXT = /^[\x21-\x7e]+$/;

/**
 * The bearer token a token file holds. Anything else is refused with an error that describes the file without
 * quoting it (a token must never reach a log), e.g. npm's `> skein@… skein` banner captured by a redirect.
 */
export function checkToken(file: string, content: string): string {
  const token = content.trim();
  if (token === '') throw new CertificateFetchError(`token file ${file} is empty`);
  if (TOKEN_TEXT.test(token)) return token;
  const lines = token.split(/\r?\n/).filter((l) => l.trim() !== '').length;
  const hint = content.includes('> skein@')
    ? ': it starts with npm\'s banner (`npm run` prints it to stdout); write it with `npm run -s skein -- token ...` or `npx skein token ...`'
    : '';
  throw new CertificateFetchError(
    `token file ${file} does not hold one token: ${lines} non-empty lines, or spaces or control characters${hint}`,
  );
}

/** TLS verification failures as grpc-js words them (Node's and OpenSSL's texts). */
const UNTRUSTED = /self[- ]signed certificate|unable to (get|verify)|certificate (has expired|is not yet valid|signature failure)|UNABLE_TO_|CERT_/i;

/**
 * grpc-js's error text, without its empty "Resolution note:" tail, and with what to check when the control plane's
 * serving certificate was not trusted.
 */
export function caCallProblem(message: string, caRootFile: string | undefined): string {
  const text = message.replace(/\.?\s*Resolution note:\s*$/, '');
  if (!UNTRUSTED.test(text)) return text;
  return `${text} (the control plane's TLS certificate does not chain to the root in ${caRootFile ?? '--ca-root-file'}: is it that control plane's root, e.g. <ca-dir>/root-cert.pem, and is --ca-address that control plane?)`;
}
