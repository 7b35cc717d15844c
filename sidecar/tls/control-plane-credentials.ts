// TLS to the control plane: its certificate checked against our roots and its SPIFFE ID, our workload certificate presented.
import type * as grpc from '@grpc/grpc-js';
import { experimental } from '@grpc/grpc-js';
import type { IdentitySource, TlsMaterial } from './contexts.ts';
import { spiffeIdOfCertificate } from './spiffe.ts';

/** The SPIFFE ID the control plane's serving certificate carries in a trust domain. */
export function controlPlaneSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/skein-system/sa/skein-control-plane`;
}

/** Node's checkServerIdentity for the control plane: it is named by its SPIFFE ID, not by the host we reach it at. */
export function checkControlPlaneIdentity(expected: string, fail: (message: string) => Error): (host: string, cert: { subjectaltname?: string }) => Error | undefined {
  return (_host, cert) => {
    const id = spiffeIdOfCertificate(cert);
    return id === expected ? undefined : fail(`control plane presented ${id ?? 'no SPIFFE ID'}, expected ${expected}`);
  };
}

/** The roots the control plane's certificate may chain to: the configured root, and the bundle the CA last sent. */
export function controlPlaneRoots(caRootPem: string, current: TlsMaterial | undefined): string {
  return current === undefined ? caRootPem : [caRootPem, ...current.trustBundlePem].join('\n');
}

/**
 * grpc-js credentials for a long-lived channel to the control plane (xDS over TLS): the roots and our certificate
 * follow each rotation, so a reconnect hours later presents the current certificate and accepts a rotated root.
 */
export function controlPlaneChannelCredentials(identity: IdentitySource, caRootPem: string, expectedId: string): grpc.ChannelCredentials {
  const ca = new Set<experimental.CaCertificateUpdateListener>();
  const mine = new Set<experimental.IdentityCertificateUpdateListener>();
  const caUpdate = (m: TlsMaterial): experimental.CaCertificateUpdate => ({ caCertificate: Buffer.from(controlPlaneRoots(caRootPem, m)) });
  const identityUpdate = (m: TlsMaterial): experimental.IdentityCertificateUpdate => ({ certificate: Buffer.from(m.certChainPem.join('')), privateKey: Buffer.from(m.keyPem) });
  identity.onRotate((m) => {
    for (const l of ca) l(caUpdate(m));
    for (const l of mine) l(identityUpdate(m));
  });
  const provider: experimental.CertificateProvider = {
    // Delivered after the caller finishes registering: grpc-js adds its own watcher only after this call returns.
    addCaCertificateListener: (l) => {
      ca.add(l);
      queueMicrotask(() => ca.has(l) && l(caUpdate(identity.current())));
    },
    removeCaCertificateListener: (l) => void ca.delete(l),
    addIdentityCertificateListener: (l) => {
      mine.add(l);
      queueMicrotask(() => mine.has(l) && l(identityUpdate(identity.current())));
    },
    removeIdentityCertificateListener: (l) => void mine.delete(l),
  };
  return experimental.createCertificateProviderChannelCredentials(provider, provider, {
    checkServerIdentity: checkControlPlaneIdentity(expectedId, (message) => new Error(message)),
  });
}

/** Channel options for a TLS channel to the control plane: a DNS-style SNI name (an IP there makes Node warn). */
export const CONTROL_PLANE_TLS_OPTIONS: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'skein-control-plane' };
