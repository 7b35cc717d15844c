// Kubernetes mode: checks a projected service-account token with a TokenReview and reads ns/sa from its username.
import type { AuthenticationV1Api } from '@kubernetes/client-node';
import { TokenError, VerifierUnavailableError } from './errors.ts';
import { identityProblem, type WorkloadIdentity } from './issue.ts';
import type { IdentityVerifier } from './tokens.ts';
import { logger } from '../log.ts';

const log = logger('ca');

const SA_PREFIX = 'system:serviceaccount:';

/** Reads `system:serviceaccount:<ns>:<sa>`; undefined for any other kind of user. */
export function serviceAccountFromUsername(username: string): WorkloadIdentity | undefined {
  if (!username.startsWith(SA_PREFIX)) return undefined;
  const parts = username.slice(SA_PREFIX.length).split(':');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  return { namespace: parts[0], serviceAccount: parts[1] };
}

export interface TokenReviewOptions {
  /** `kubeConfig.makeApiClient(AuthenticationV1Api)`; the control plane's account needs `create tokenreviews`. */
  readonly api: Pick<AuthenticationV1Api, 'createTokenReview'>;
  /** Audiences the token must carry (e.g. ["skein-ca"]); empty means the API server's default audience. */
  readonly audiences?: readonly string[];
}

export class TokenReviewVerifier implements IdentityVerifier {
  readonly #api: Pick<AuthenticationV1Api, 'createTokenReview'>;
  readonly #audiences: readonly string[];

  constructor(options: TokenReviewOptions) {
    this.#api = options.api;
    this.#audiences = options.audiences ?? [];
  }

  async verify(token: string): Promise<WorkloadIdentity> {
    const spec: { token: string; audiences?: string[] } = { token };
    if (this.#audiences.length > 0) spec.audiences = [...this.#audiences];
    let review;
    try {
      review = await this.#api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec },
      });
    } catch (err) {
      log.debug(`TokenReview failed: ${(err as Error).message}`);
      throw new VerifierUnavailableError(
        `TokenReview call to the Kubernetes API failed (${(err as Error).message}); check the API server and that the ` +
          'control plane may create tokenreviews (system:auth-delegator)',
        { cause: err },
      );
    }
    const status = review.status;
    if (!status?.authenticated) {
      throw new TokenError(`token: rejected by the Kubernetes API (${status?.error || 'not authenticated'})`);
    }
    if (this.#audiences.length > 0) {
      const got = status.audiences ?? [];
      if (!this.#audiences.some((a) => got.includes(a))) {
        throw new TokenError(`token: audiences [${got.join(', ')}] do not include ${this.#audiences.join(' or ')}`);
      }
    }
    const username = status.user?.username ?? '';
    const identity = serviceAccountFromUsername(username);
    if (!identity) throw new TokenError(`token: belongs to "${username}", not to a service account`);
    const problem = identityProblem(identity);
    if (problem) throw new TokenError(`token: ${problem}`);
    return identity;
  }
}

/** Sends Skein bootstrap tokens to one verifier and everything else (service-account JWTs) to another. */
export class RoutingVerifier implements IdentityVerifier {
  readonly #bootstrap: IdentityVerifier;
  readonly #other: IdentityVerifier;
  readonly #isBootstrap: (token: string) => boolean;

  constructor(bootstrap: IdentityVerifier, other: IdentityVerifier, isBootstrap: (token: string) => boolean) {
    this.#bootstrap = bootstrap;
    this.#other = other;
    this.#isBootstrap = isBootstrap;
  }

  verify(token: string): Promise<WorkloadIdentity> {
    return (this.#isBootstrap(token) ? this.#bootstrap : this.#other).verify(token);
  }
}
