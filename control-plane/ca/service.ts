// The gRPC CertificateService: bearer token -> proven identity, CSR -> leaf; mount it on the TLS port 15012.
import * as grpc from '@grpc/grpc-js';
import { type CertificateServiceHandlers, grpcDefinitions } from '../../proto/index.ts';
import type { CertificateAuthority } from './authority.ts';
import { CaConfigError, CaError, CsrError, IdentityMismatchError, TokenError, VerifierUnavailableError } from './errors.ts';
import { type IssuedCertificate, issueFromCsr, type WorkloadIdentity } from './issue.ts';
import type { IdentityVerifier } from './tokens.ts';
import { logger } from '../log.ts';

const log = logger('ca');

export interface CertificateServiceOptions {
  readonly authority: CertificateAuthority;
  readonly verifier: IdentityVerifier;
  /** Called after each issued leaf (metrics, audit). Receives no key material. */
  readonly onIssued?: (issued: IssuedCertificate, identity: WorkloadIdentity, requester: string) => void;
  /** Called for each refused request with its gRPC status (metrics). */
  readonly onRefused?: (code: grpc.status, reason: string) => void;
}

class RpcError extends Error {
  readonly grpcCode: grpc.status;
  constructor(grpcCode: grpc.status, message: string) {
    super(message);
    this.grpcCode = grpcCode;
  }
}

/** The bearer token from `authorization: Bearer <token>` metadata, or an UNAUTHENTICATED RpcError. */
function bearerToken(metadata: grpc.Metadata): string {
  const values = metadata.get('authorization');
  if (values.length !== 1 || typeof values[0] !== 'string') {
    throw new RpcError(grpc.status.UNAUTHENTICATED, 'missing "authorization: Bearer <token>" metadata');
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(values[0]);
  if (!m?.[1]) throw new RpcError(grpc.status.UNAUTHENTICATED, 'authorization metadata is not "Bearer <token>"');
  return m[1];
}

/**
 * Who the caller is: its bearer token; or, when it has none that is valid any more, the workload certificate it
 * presents on the TLS connection, if this CA issued it and it is still valid (a sidecar renewing after its bootstrap
 * token expired, as SPIRE agents renew with their SVID). The token's error is the one reported when neither works.
 */
async function proveIdentity(
  call: { metadata: grpc.Metadata; getAuthContext?: () => { sslPeerCertificate?: { raw?: Buffer } } | null },
  options: CertificateServiceOptions,
): Promise<WorkloadIdentity> {
  try {
    return await options.verifier.verify(bearerToken(call.metadata));
  } catch (err) {
    if (err instanceof VerifierUnavailableError) throw err;
    // grpc-js gives the peer certificate only when the TLS handshake verified the client's chain against the CA's
    // trust bundle (the serving credentials' roots): the leaf may come from an intermediate of before a restart.
    const raw = call.getAuthContext?.()?.sslPeerCertificate?.raw;
    const renewing = raw === undefined ? undefined : options.authority.workloadOf(raw, true);
    if (renewing === undefined) throw err;
    log.debug(`renewing ${renewing.namespace}/${renewing.serviceAccount} on its current certificate`);
    return renewing;
  }
}

const REFUSAL_LOG_EVERY_MS = 60_000;
const refusalsLogged = new Map<string, number>();

/** Whether this refusal (peer, status, reason) was not logged in the last minute; remembers at most 1000 of them. */
function refusalLogDue(key: string): boolean {
  const now = Date.now();
  const last = refusalsLogged.get(key);
  if (last !== undefined && now - last < REFUSAL_LOG_EVERY_MS) return false;
  if (refusalsLogged.size >= 1000) refusalsLogged.clear();
  refusalsLogged.set(key, now);
  return true;
}

/** Maps the CA's errors onto gRPC status codes. */
export function grpcStatusFor(err: unknown): grpc.status {
  if (err instanceof RpcError) return err.grpcCode;
  if (err instanceof TokenError) return grpc.status.UNAUTHENTICATED;
  if (err instanceof VerifierUnavailableError) return grpc.status.UNAVAILABLE;
  if (err instanceof IdentityMismatchError) return grpc.status.PERMISSION_DENIED;
  if (err instanceof CsrError) return grpc.status.INVALID_ARGUMENT;
  if (err instanceof CaConfigError) return grpc.status.FAILED_PRECONDITION;
  return grpc.status.INTERNAL;
}

function validityMs(value: string | undefined): number {
  const seconds = Number(value ?? '0');
  if (!Number.isSafeInteger(seconds) || seconds < 0) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, `validity_seconds: ${value} is not a non-negative integer`);
  }
  return seconds * 1000;
}

/** The CertificateService handlers, for tests or a server that registers services itself. */
export function certificateServiceHandlers(options: CertificateServiceOptions): CertificateServiceHandlers {
  return {
    CreateCertificate(call, callback) {
      const peer = call.getPeer();
      void (async () => {
        const identity = await proveIdentity(call, options);
        const issued = issueFromCsr(options.authority, call.request.csr, identity, validityMs(call.request.validity_seconds));
        log.debug(`issued ${issued.spiffeId} serial ${issued.serial} until ${issued.notAfter.toISOString()} to ${peer}`);
        options.onIssued?.(issued, identity, call.request.requester);
        return { cert_chain: [...issued.certChain], trust_bundle: [...issued.trustBundle] };
      })().then(
        (response) => callback(null, response),
        (err: unknown) => {
          const code = grpcStatusFor(err);
          const details = err instanceof CaError || err instanceof RpcError ? err.message : 'internal error issuing a certificate';
          // Logged at warn (once a minute per peer and reason, so a sidecar retrying does not flood the log).
          if (refusalLogDue(`${peer} ${code} ${details}`)) log.warn(`refused a certificate to ${peer}: ${grpc.status[code]} ${details}`);
          else log.debug(`refused a certificate to ${peer}: ${grpc.status[code]} ${(err as Error).message}`);
          options.onRefused?.(code, details);
          callback({ code, details });
        },
      );
    },
  };
}

/**
 * Mounts CertificateService on `server`. Mount it on the TLS port (15012) only: callers send bearer tokens.
 */
export function addCertificateService(server: grpc.Server, options: CertificateServiceOptions): void {
  const definition = grpcDefinitions().skein.ca.v1.CertificateService.service;
  server.addService(definition, certificateServiceHandlers(options));
}
