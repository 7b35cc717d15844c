// The CA folder's interface: open an authority, verify callers, mount the CertificateService, serve 15012 with TLS.
export { type AuthorityOptions, CertificateAuthority, createRoot, DEFAULT_TRUST_DOMAIN, type ProvidedRoot } from './authority.ts';
export { CaConfigError, CaError, CaStorageError, CsrError, IdentityMismatchError, TokenError, VerifierUnavailableError } from './errors.ts';
export { type IssuedCertificate, issueFromCsr, spiffeIdFor, type WorkloadIdentity } from './issue.ts';
export { SecretCaStore } from './secret-store.ts';
export { addCertificateService, certificateServiceHandlers, type CertificateServiceOptions } from './service.ts';
export { controlPlaneSpiffeId, createServingCertificate, type ServingCertificate, ServingCertificateProvider } from './serving.ts';
export { type CaFiles, type CaStore, DirectoryCaStore } from './store.ts';
export { RoutingVerifier, TokenReviewVerifier } from './token-review.ts';
export { BootstrapTokenVerifier, type IdentityVerifier, isBootstrapToken, loadOrCreateTokenSecret, mintBootstrapToken } from './tokens.ts';
