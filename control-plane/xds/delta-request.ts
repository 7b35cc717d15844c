// The delta ADS read path: a plain ACK (type_url and response_nonce only) is read without protobufjs.
import type * as grpc from '@grpc/grpc-js';
import { messageRoot } from '../../proto/index.ts';

/** How to make a fresh request with every field at its default, as protobufjs' toObject({ defaults: true }) gives it. */
type Shape = readonly (readonly [key: string, kind: 'array' | 'map' | 'value', value: unknown])[];

interface AckLayout {
  readonly typeUrlTag: number;
  readonly nonceTag: number;
  readonly shape: Shape;
}

let layout: AckLayout | undefined;

function ackLayout(original: (bytes: Buffer) => object): AckLayout {
  if (!layout) {
    const type = messageRoot().lookupType('envoy.service.discovery.v3.DeltaDiscoveryRequest');
    const typeUrl = type.fields.type_url?.id;
    const nonce = type.fields.response_nonce?.id;
    if (typeUrl === undefined || nonce === undefined || typeUrl > 15 || nonce > 15) throw new Error('DeltaDiscoveryRequest fields moved');
    const shape = Object.entries(original(Buffer.alloc(0))).map(([key, value]): Shape[number] => {
      if (Array.isArray(value)) return [key, 'array', undefined];
      if (value !== null && typeof value === 'object') return [key, 'map', undefined];
      return [key, 'value', value];
    });
    layout = { typeUrlTag: (typeUrl << 3) | 2, nonceTag: (nonce << 3) | 2, shape };
  }
  return layout;
}

/** Where readLength stopped. */
let lengthEnd = 0;

/** A length varint at `pos` (at most 4 bytes: 256 MiB), or -1. */
function readLength(bytes: Buffer, pos: number): number {
  let value = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= bytes.length) return -1;
    const b = bytes[pos++] as number;
    value |= (b & 0x7f) << shift;
    if (b < 0x80) {
      lengthEnd = pos;
      return value;
    }
  }
  return -1;
}

/**
 * Wraps the delta request deserializer. Once a delta stream is up, nearly every request is an ACK holding only its
 * type_url and response_nonce; those are read straight from the bytes into an object shaped like protobufjs'
 * (every other field at its default, fresh arrays and maps). Anything else (the node, subscriptions, a NACK's
 * error_detail, an unknown or repeated field, malformed bytes) is read by the original deserializer.
 */
export function fastAckDeserializer<T extends object>(original: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes: Buffer) => {
    const { typeUrlTag, nonceTag, shape } = ackLayout(original);
    let typeUrl: string | undefined;
    let nonce: string | undefined;
    let pos = 0;
    while (pos < bytes.length) {
      const tag = bytes[pos] as number;
      if (tag !== typeUrlTag && tag !== nonceTag) return original(bytes);
      const n = readLength(bytes, pos + 1);
      if (n < 0 || lengthEnd + n > bytes.length) return original(bytes);
      const value = bytes.toString('utf8', lengthEnd, lengthEnd + n);
      if (tag === typeUrlTag) {
        if (typeUrl !== undefined) return original(bytes);
        typeUrl = value;
      } else {
        if (nonce !== undefined) return original(bytes);
        nonce = value;
      }
      pos = lengthEnd + n;
    }
    const out: Record<string, unknown> = {};
    for (const [key, kind, value] of shape) out[key] = kind === 'array' ? [] : kind === 'map' ? {} : value;
    if (typeUrl !== undefined) out.type_url = typeUrl;
    if (nonce !== undefined) out.response_nonce = nonce;
    return out as T;
  };
}

/** The ADS service definition with the delta method reading plain ACKs directly. */
export function withFastDeltaAcks(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const [name, method] of Object.entries(service) as [string, grpc.MethodDefinition<object, object>][]) {
    out[name] = name === 'DeltaAggregatedResources' ? { ...method, requestDeserialize: fastAckDeserializer(method.requestDeserialize) } : method;
  }
  return out as grpc.ServiceDefinition;
}
