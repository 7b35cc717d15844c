import { describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import {
  CaConfigError,
  CaStorageError,
  CsrError,
  IdentityMismatchError,
  TokenError,
  VerifierUnavailableError,
} from '../../../control-plane/ca/errors.ts';
import { grpcStatusFor } from '../../../control-plane/ca/service.ts';
import { uriSans } from '../../../sidecar/tls/spiffe.ts';

describe('CA error classes', () => {
  it.each([
    [new CaStorageError('m'), 'SKEIN_CA_STORAGE', grpc.status.INTERNAL],
    [new CsrError('m'), 'SKEIN_CA_CSR', grpc.status.INVALID_ARGUMENT],
    [new IdentityMismatchError('m'), 'SKEIN_CA_IDENTITY_MISMATCH', grpc.status.PERMISSION_DENIED],
    [new TokenError('m'), 'SKEIN_CA_TOKEN', grpc.status.UNAUTHENTICATED],
    [new VerifierUnavailableError('m'), 'SKEIN_CA_VERIFIER_UNAVAILABLE', grpc.status.UNAVAILABLE],
    [new CaConfigError('m'), 'SKEIN_CA_CONFIG', grpc.status.FAILED_PRECONDITION],
  ])('%s has a stable code and gRPC status', (err, code, status) => {
    expect(err.code).toBe(code);
    expect(err.name).toBe(err.constructor.name);
    expect(grpcStatusFor(err)).toBe(status);
  });
});

describe('uriSans', () => {
  it('reads URI entries, including JSON-quoted ones Node writes for values with commas', () => {
    expect(uriSans('URI:spiffe://a/ns/b/sa/c, DNS:x.y, IP Address:127.0.0.1')).toEqual(['spiffe://a/ns/b/sa/c']);
    expect(uriSans('DNS:x, URI:"spiffe://a/x,y"')).toEqual(['spiffe://a/x,y']);
    expect(uriSans(undefined)).toEqual([]);
  });
});
