// The ADS read path: a SotW request's resource_names decoded only when they differ from the subscription's.
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { messageRoot } from '../../proto/index.ts';

/** The wire bytes of a request's resource_names entries (a view into the received message). */
const RAW_NAMES = Symbol('skein.rawResourceNames');

let namesField: number | undefined;

function resourceNamesField(): number {
  namesField ??= messageRoot().lookupType('envoy.service.discovery.v3.DiscoveryRequest').fields.resource_names?.id;
  if (namesField === undefined) throw new Error('DiscoveryRequest has no resource_names field');
  return namesField;
}

/** The raw resource_names bytes of a request read by the lazy deserializer, if it had any. */
export function rawNamesOf(request: object): Buffer | undefined {
  return (request as { [RAW_NAMES]?: Buffer })[RAW_NAMES];
}

/**
 * Wraps the SotW request deserializer. A SotW client repeats its whole subscription (thousands of names) in every
 * ACK; decoding those strings was most of the cost of an ACK. The wrapper finds the resource_names entries with
 * protobufjs' Reader, decodes the rest of the message, and decodes the names only when `resource_names` is read;
 * the stream first compares the raw bytes with those of the subscription it already has.
 */
function lazyNamesDeserializer<T extends object>(original: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes: Buffer) => {
    const field = resourceNamesField();
    const reader = protobuf.Reader.create(bytes);
    let first = -1;
    let end = -1;
    while (reader.pos < reader.len) {
      const start = reader.pos;
      const tag = reader.uint32();
      reader.skipType(tag & 7);
      if (tag >>> 3 !== field) continue;
      if (first !== -1 && start !== end) return original(bytes); // not one run of entries: decode as usual
      if (first === -1) first = start;
      end = reader.pos;
    }
    if (first === -1) return original(bytes);
    const message = original(Buffer.concat([bytes.subarray(0, first), bytes.subarray(end)]));
    const raw = bytes.subarray(first, end);
    let names: unknown;
    Object.defineProperty(message, 'resource_names', {
      enumerable: true,
      configurable: true,
      get: () => (names ??= (original(raw) as { resource_names?: unknown }).resource_names),
    });
    Object.defineProperty(message, RAW_NAMES, { value: raw });
    return message;
  };
}

/** The ADS service definition with the SotW method reading resource_names lazily. */
export function withLazyRequestNames(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const [name, method] of Object.entries(service) as [string, grpc.MethodDefinition<object, object>][]) {
    out[name] =
      name === 'StreamAggregatedResources' ? { ...method, requestDeserialize: lazyNamesDeserializer(method.requestDeserialize) } : method;
  }
  return out as grpc.ServiceDefinition;
}
