// grpc-js clients built straight from the protobufjs message root, without @grpc/proto-loader's second parse of every .proto.
import type * as grpc from '@grpc/grpc-js';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { AggregatedDiscoveryServiceClient } from './generated/envoy/service/discovery/v3/AggregatedDiscoveryService.ts';
import type { CertificateServiceClient } from './generated/skein/ca/v1/CertificateService.ts';
import { CONVERSION, messageRoot } from './load.ts';

/** A client class as grpc-js makes it: `new Client(address, credentials, options)`. */
export type ClientConstructor<C> = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => C;

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);

/**
 * The service definition @grpc/proto-loader would build for `serviceName`, with the same conversion (CONVERSION), from
 * the one protobufjs root the sidecar already holds for Any payloads. The sidecar's memory is the reason: proto-loader
 * parses every file again and keeps a serialized descriptor per type.
 */
export function serviceDefinition(serviceName: string): grpc.ServiceDefinition {
  const service = messageRoot().lookupService(serviceName);
  const definition: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const m of service.methodsArray) {
    m.resolve();
    const req = m.resolvedRequestType as protobuf.Type;
    const res = m.resolvedResponseType as protobuf.Type;
    const serialize = (type: protobuf.Type) => (value: object) => Buffer.from(type.encode(type.fromObject(value)).finish());
    const deserialize = (type: protobuf.Type) => (bytes: Buffer) => type.toObject(type.decode(bytes), CONVERSION);
    definition[m.name] = {
      path: `/${serviceName}/${m.name}`,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
      requestSerialize: serialize(req),
      requestDeserialize: deserialize(req),
      responseSerialize: serialize(res),
      responseDeserialize: deserialize(res),
      originalName: lowerFirst(m.name),
    };
  }
  return definition;
}

const constructors = new Map<string, unknown>();

function clientFor<C>(serviceName: string): ClientConstructor<C> {
  let c = constructors.get(serviceName);
  if (c === undefined) {
    c = makeGenericClientConstructor(serviceDefinition(serviceName), serviceName);
    constructors.set(serviceName, c);
  }
  return c as ClientConstructor<C>;
}

/** envoy.service.discovery.v3.AggregatedDiscoveryService (StreamAggregatedResources, DeltaAggregatedResources). */
export function adsClientConstructor(): ClientConstructor<AggregatedDiscoveryServiceClient> {
  return clientFor('envoy.service.discovery.v3.AggregatedDiscoveryService');
}

/** skein.ca.v1.CertificateService (CreateCertificate). */
export function certificateClientConstructor(): ClientConstructor<CertificateServiceClient> {
  return clientFor('skein.ca.v1.CertificateService');
}
