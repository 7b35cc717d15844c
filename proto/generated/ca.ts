import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { CertificateRequest as _skein_ca_v1_CertificateRequest, CertificateRequest__Output as _skein_ca_v1_CertificateRequest__Output } from './skein/ca/v1/CertificateRequest';
import type { CertificateResponse as _skein_ca_v1_CertificateResponse, CertificateResponse__Output as _skein_ca_v1_CertificateResponse__Output } from './skein/ca/v1/CertificateResponse';
import type { CertificateServiceClient as _skein_ca_v1_CertificateServiceClient, CertificateServiceDefinition as _skein_ca_v1_CertificateServiceDefinition } from './skein/ca/v1/CertificateService';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  skein: {
    ca: {
      v1: {
        CertificateRequest: MessageTypeDefinition<_skein_ca_v1_CertificateRequest, _skein_ca_v1_CertificateRequest__Output>
        CertificateResponse: MessageTypeDefinition<_skein_ca_v1_CertificateResponse, _skein_ca_v1_CertificateResponse__Output>
        CertificateService: SubtypeConstructor<typeof grpc.Client, _skein_ca_v1_CertificateServiceClient> & { service: _skein_ca_v1_CertificateServiceDefinition }
      }
    }
  }
}

