// Original file: proto/skein/ca/v1/ca.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CertificateRequest as _skein_ca_v1_CertificateRequest, CertificateRequest__Output as _skein_ca_v1_CertificateRequest__Output } from '../../../skein/ca/v1/CertificateRequest';
import type { CertificateResponse as _skein_ca_v1_CertificateResponse, CertificateResponse__Output as _skein_ca_v1_CertificateResponse__Output } from '../../../skein/ca/v1/CertificateResponse';

export interface CertificateServiceClient extends grpc.Client {
  CreateCertificate(argument: _skein_ca_v1_CertificateRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_skein_ca_v1_CertificateResponse__Output>): grpc.ClientUnaryCall;
  CreateCertificate(argument: _skein_ca_v1_CertificateRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_skein_ca_v1_CertificateResponse__Output>): grpc.ClientUnaryCall;
  CreateCertificate(argument: _skein_ca_v1_CertificateRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_skein_ca_v1_CertificateResponse__Output>): grpc.ClientUnaryCall;
  CreateCertificate(argument: _skein_ca_v1_CertificateRequest, callback: grpc.requestCallback<_skein_ca_v1_CertificateResponse__Output>): grpc.ClientUnaryCall;
  createCertificate(argument: _skein_ca_v1_CertificateRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_skein_ca_v1_CertificateResponse__Output>): grpc.ClientUnaryCall;
  createCertificate(argument: _skein_ca_v1_CertificateRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_skein_ca_v1_CertificateResponse__Output>): grpc.ClientUnaryCall;
  createCertificate(argument: _skein_ca_v1_CertificateRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_skein_ca_v1_CertificateResponse__Output>): grpc.ClientUnaryCall;
  createCertificate(argument: _skein_ca_v1_CertificateRequest, callback: grpc.requestCallback<_skein_ca_v1_CertificateResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface CertificateServiceHandlers extends grpc.UntypedServiceImplementation {
  CreateCertificate: grpc.handleUnaryCall<_skein_ca_v1_CertificateRequest__Output, _skein_ca_v1_CertificateResponse>;
  
}

export interface CertificateServiceDefinition extends grpc.ServiceDefinition {
  CreateCertificate: MethodDefinition<_skein_ca_v1_CertificateRequest, _skein_ca_v1_CertificateResponse, _skein_ca_v1_CertificateRequest__Output, _skein_ca_v1_CertificateResponse__Output>
}
