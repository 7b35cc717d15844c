// The control plane's own serving certificate for 15012, renewed in memory and handed to grpc-js as a cert provider.
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import type { CertificateAuthority } from './authority.ts';
import { issueLeaf } from './issue.ts';
import { forgePrivateKey, generateRsaKey, publicKeyOf } from './x509.ts';
import { logger } from '../log.ts';

const log = logger('ca');

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

export const CONTROL_PLANE_NAMESPACE = 'skein-system';
export const CONTROL_PLANE_SERVICE_ACCOUNT = 'skein-control-plane';

export interface ServingOptions {
  /** DNS SANs, e.g. skein-control-plane.skein-system.svc and localhost. */
  readonly dnsNames?: readonly string[];
  /** IP SANs, e.g. 127.0.0.1 in local mode. */
  readonly ipAddresses?: readonly string[];
  readonly ttlMs?: number;
}

export interface ServingCertificate {
  readonly keyPem: string;
  /** Leaf then intermediates, concatenated PEM. */
  readonly certChainPem: string;
  /** Roots, concatenated PEM: what sidecars need to trust 15012. */
  readonly trustBundlePem: string;
  readonly spiffeId: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** The SPIFFE ID the control plane serves as (sidecars check it instead of a host name). */
export function controlPlaneSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${CONTROL_PLANE_NAMESPACE}/sa/${CONTROL_PLANE_SERVICE_ACCOUNT}`;
}

/** Makes a serving certificate with SAN spiffe://<td>/ns/skein-system/sa/skein-control-plane plus the given names. */
export async function createServingCertificate(ca: CertificateAuthority, options: ServingOptions = {}): Promise<ServingCertificate> {
  const { keyPem } = await generateRsaKey();
  const issued = issueLeaf(ca, publicKeyOf(forgePrivateKey(keyPem, 'serving key')), {
    identity: { namespace: CONTROL_PLANE_NAMESPACE, serviceAccount: CONTROL_PLANE_SERVICE_ACCOUNT },
    ttlMs: options.ttlMs,
    dnsNames: options.dnsNames ?? ['localhost'],
    ipAddresses: options.ipAddresses ?? ['127.0.0.1'],
  });
  return {
    keyPem,
    certChainPem: issued.certChain.join(''),
    trustBundlePem: issued.trustBundle.join(''),
    spiffeId: issued.spiffeId,
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
  };
}

/**
 * Holds the current serving certificate and renews it at half its lifetime; grpc-js servers built with
 * `credentials()` pick each renewal up for new connections.
 */
export class ServingCertificateProvider implements CertificateProvider {
  readonly #ca: CertificateAuthority;
  readonly #options: ServingOptions;
  #current: ServingCertificate;
  #timer: NodeJS.Timeout | undefined;
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();

  private constructor(ca: CertificateAuthority, options: ServingOptions, first: ServingCertificate) {
    this.#ca = ca;
    this.#options = options;
    this.#current = first;
  }

  static async start(ca: CertificateAuthority, options: ServingOptions = {}): Promise<ServingCertificateProvider> {
    const provider = new ServingCertificateProvider(ca, options, await createServingCertificate(ca, options));
    provider.#schedule();
    return provider;
  }

  current(): ServingCertificate {
    return this.#current;
  }

  /** Server credentials for 15012: TLS with this certificate; client certificates are asked for but optional. */
  credentials(): ServerCredentials {
    return experimental.createCertificateProviderServerCredentials(this, this, false);
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    const { notBefore, notAfter } = this.#current;
    const at = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) / 2;
    const delay = Math.min(Math.max(at - Date.now(), 1000), 2 ** 31 - 1);
    this.#timer = setTimeout(() => void this.#renew(), delay);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    try {
      this.#current = await createServingCertificate(this.#ca, this.#options);
      log.debug(`renewed the serving certificate until ${this.#current.notAfter.toISOString()}`);
      for (const l of this.#caListeners) l(this.#caUpdate());
      for (const l of this.#identityListeners) l(this.#identityUpdate());
    } catch (err) {
      log.debug(`renewing the serving certificate failed: ${(err as Error).message}`);
    } finally {
      if (this.#timer) this.#schedule();
    }
  }

  #caUpdate(): experimental.CaCertificateUpdate {
    return { caCertificate: Buffer.from(this.#current.trustBundlePem) };
  }

  #identityUpdate(): experimental.IdentityCertificateUpdate {
    return { certificate: Buffer.from(this.#current.certChainPem), privateKey: Buffer.from(this.#current.keyPem) };
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    // Deliver after the caller finishes registering: grpc-js adds its own watcher only after this call returns.
    queueMicrotask(() => {
      if (this.#caListeners.has(listener)) listener(this.#caUpdate());
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.#identityListeners.has(listener)) listener(this.#identityUpdate());
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}
