// The TLS folder's interface: the workload identity (key, CSR, rotation) and the mTLS contexts the data path uses.
export { type AllowedPeers, type IdentitySource, type OutboundTarget, PeerIdentityError, spiffeServerIdentityCheck, type TlsMaterial, TlsContexts, type TlsContextsOptions } from './contexts.ts';
export { CertificateFetchError, WorkloadIdentity, type WorkloadIdentityOptions } from './identity.ts';
export { registerCertificateMetrics } from './metrics.ts';
export { parseSpiffeId, peerSpiffeId, spiffeId, spiffeIdOfCertificate } from './spiffe.ts';
