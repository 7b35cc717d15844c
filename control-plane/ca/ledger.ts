// Remembers the last certificate issued to each proxy (by xDS node id) and exports CA metrics.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CertificateAuthority } from './authority.ts';
import type { IssuedCertificate } from './issue.ts';

export interface IssuedRecord {
  readonly spiffeId: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly issuedAt: string;
}

/** Bounded: entries whose certificate has expired are dropped on the next issue. */
export class CertificateLedger {
  readonly #byRequester = new Map<string, IssuedRecord>();
  readonly #issued: Counter<'result'>;

  constructor(registry: Registry, authority: CertificateAuthority) {
    this.#issued = new Counter({
      name: 'skein_ca_certificate_requests_total',
      help: 'Certificate-signing requests, by result (issued, or the gRPC status of the refusal)',
      labelNames: ['result'],
      registers: [registry],
    });
    new Gauge({
      name: 'skein_ca_root_expiry_timestamp_seconds',
      help: 'When the earliest-expiring root of the trust bundle expires (Unix seconds)',
      registers: [registry],
      collect() {
        this.set(authority.earliestRootExpiry().getTime() / 1000);
      },
    });
  }

  issued(issued: IssuedCertificate, requester: string): void {
    this.#issued.inc({ result: 'issued' });
    if (!requester) return;
    const now = Date.now();
    for (const [key, record] of this.#byRequester) if (Date.parse(record.notAfter) < now) this.#byRequester.delete(key);
    this.#byRequester.set(requester, {
      spiffeId: issued.spiffeId,
      serial: issued.serial,
      notAfter: issued.notAfter.toISOString(),
      issuedAt: new Date(now).toISOString(),
    });
  }

  refused(result: string): void {
    this.#issued.inc({ result });
  }

  lookup(requester: string): IssuedRecord | undefined {
    return this.#byRequester.get(requester);
  }
}

/**
 * The proxy a certificate request names (its xDS node id, `sidecar~<ip>~<pod>.<namespace>~...`), kept only when
 * that namespace is the one the caller proved: anyone with a token must not be able to pass off a certificate as
 * another namespace's proxy's in proxy-status. '' (not recorded) otherwise.
 */
export function requesterOf(requester: string, provenNamespace: string): string {
  const parts = requester.split('~');
  if (parts.length < 3) return '';
  const podDotNs = parts[2] as string;
  return podDotNs.slice(podDotNs.lastIndexOf('.') + 1) === provenNamespace ? requester : ''; // a namespace has no dots
}
