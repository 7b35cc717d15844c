// Packs and unpacks google.protobuf.Any values by type URL, with Envoy's field names.
import { CONVERSION, messageRoot } from './load.ts';

export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

export class UnknownTypeError extends Error {
  readonly code = 'SKEIN_PROTO_UNKNOWN_TYPE';
  readonly typeUrl: string;
  constructor(typeUrl: string) {
    super(`unknown protobuf type URL ${JSON.stringify(typeUrl)}`);
    this.typeUrl = typeUrl;
    this.name = 'UnknownTypeError';
  }
}

function typeFor(typeUrl: string) {
  const slash = typeUrl.lastIndexOf('/');
  const name = typeUrl.slice(slash + 1);
  try {
    return messageRoot().lookupType(name);
  } catch {
    throw new UnknownTypeError(typeUrl);
  }
}

/** Encodes a plain object (snake_case fields) as the bytes of the message `typeUrl` names. */
export function encodeMessage(typeUrl: string, message: object): Buffer {
  const type = typeFor(typeUrl);
  return Buffer.from(type.encode(type.fromObject(message)).finish());
}

/** Wraps a plain object into an Any. */
export function pack(typeUrl: string, message: object): AnyMessage {
  return { type_url: typeUrl, value: encodeMessage(typeUrl, message) };
}

/** Decodes the bytes of the message `typeUrl` names into a plain object (defaults filled, enums as names). */
export function decodeMessage<T = Record<string, unknown>>(typeUrl: string, bytes: Uint8Array): T {
  const type = typeFor(typeUrl);
  return type.toObject(type.decode(bytes), CONVERSION) as T;
}

/** Unpacks an Any; throws UnknownTypeError for a type Skein does not know, or protobufjs's error for bad bytes. */
export function unpack<T = Record<string, unknown>>(any: { type_url: string; value: Uint8Array }): T {
  return decodeMessage<T>(any.type_url, any.value);
}
