// Test helper: a real CA (control-plane code) in a temp dir issuing TlsMaterial for workloads, and a static source.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../../../control-plane/ca/authority.ts';
import { issueFromCsr } from '../../../control-plane/ca/issue.ts';
import { DirectoryCaStore } from '../../../control-plane/ca/store.ts';
import { generateRsaKey } from '../../../control-plane/ca/x509.ts';
import type { IdentitySource, TlsMaterial } from '../../../sidecar/tls/contexts.ts';
import { buildCsr } from '../../../sidecar/tls/identity.ts';

export interface TestCa {
  readonly dir: string;
  readonly ca: CertificateAuthority;
  /** A leaf for ns/sa; `at` shifts the CA's clock (a past `at` with a short ttl gives an expired leaf). */
  leaf(ns: string, sa: string, opts?: { at?: Date; ttlMs?: number; bundle?: readonly string[] }): Promise<TlsMaterial>;
  close(): Promise<void>;
}

export async function testCa(trustDomain = 'mesh.test'): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'skein-tls-'));
  const store = new DirectoryCaStore(join(dir, 'ca'));
  const ca = await CertificateAuthority.open({ trustDomain, store });
  return {
    dir,
    ca,
    async leaf(ns, sa, opts = {}) {
      const issuer = opts.at ? await CertificateAuthority.open({ trustDomain, store, now: () => opts.at as Date }) : ca;
      const { keyPem } = await generateRsaKey();
      const issued = issueFromCsr(issuer, buildCsr(keyPem), { namespace: ns, serviceAccount: sa }, opts.ttlMs);
      return {
        keyPem,
        certChainPem: issued.certChain,
        trustBundlePem: opts.bundle ?? issued.trustBundle,
        spiffeId: issued.spiffeId,
        notAfter: issued.notAfter,
      };
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

/** An IdentitySource whose material the test replaces by hand. */
export class StaticSource implements IdentitySource {
  #material: TlsMaterial;
  readonly #listeners = new Set<(m: TlsMaterial) => void>();
  constructor(material: TlsMaterial) {
    this.#material = material;
  }
  current(): TlsMaterial {
    return this.#material;
  }
  onRotate(cb: (m: TlsMaterial) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }
  rotate(material: TlsMaterial): void {
    this.#material = material;
    for (const cb of this.#listeners) cb(material);
  }
}
