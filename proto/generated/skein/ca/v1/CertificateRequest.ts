// Original file: proto/skein/ca/v1/ca.proto

import type { Long } from '@grpc/proto-loader';

export interface CertificateRequest {
  'csr'?: (string);
  'validity_seconds'?: (number | string | Long);
  'requester'?: (string);
}

export interface CertificateRequest__Output {
  'csr': (string);
  'validity_seconds': (string);
  'requester': (string);
}
