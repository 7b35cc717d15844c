// Original file: proto/skein/ca/v1/ca.proto


export interface CertificateResponse {
  'cert_chain'?: (string)[];
  'trust_bundle'?: (string)[];
}

export interface CertificateResponse__Output {
  'cert_chain': (string)[];
  'trust_bundle': (string)[];
}
