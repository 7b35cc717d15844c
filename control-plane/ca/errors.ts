// Error classes of the certificate authority: one class per failure, each with a stable code and a what-to-do message.
import { SkeinControlPlaneError } from '../errors.ts';

export class CaError extends SkeinControlPlaneError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = new.target.name;
  }
}

/** A key file or directory is readable by group or others, or the store holds something unusable. */
export class CaStorageError extends CaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SKEIN_CA_STORAGE', message, options);
  }
}

/** The CSR cannot be parsed, its signature does not verify, or its key is too weak. */
export class CsrError extends CaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SKEIN_CA_CSR', message, options);
  }
}

/** The CSR asks for an identity the caller did not prove. */
export class IdentityMismatchError extends CaError {
  constructor(message: string) {
    super('SKEIN_CA_IDENTITY_MISMATCH', message);
  }
}

/** A bootstrap or service-account token is malformed, forged, expired or not a service account. */
export class TokenError extends CaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SKEIN_CA_TOKEN', message, options);
  }
}

/** The identity could not be checked because a dependency (the Kubernetes API) failed: retry later. */
export class VerifierUnavailableError extends CaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SKEIN_CA_VERIFIER_UNAVAILABLE', message, options);
  }
}

/** A user-provided root, intermediate or lifetime setting cannot be used. */
export class CaConfigError extends CaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SKEIN_CA_CONFIG', message, options);
  }
}
