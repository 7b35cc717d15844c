// Encodes resources once into Any with a content-hash version, reusing the previous object when bytes are equal.
import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import type { TypeUrl } from '../../proto/index.ts';
import { encodeMessage, TYPE_URL } from '../../proto/index.ts';
import type { VersionedResource } from './snapshot.ts';

/** sha256 of the bytes, first 16 hex digits: equal bytes give equal versions, across restarts too. */
export function contentVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/** Wraps already-encoded bytes; returns `previous` untouched when the bytes have not changed. */
export function versionedBytes(
  typeUrl: TypeUrl,
  name: string,
  bytes: Buffer,
  message: object,
  previous?: VersionedResource,
): VersionedResource {
  if (previous && previous.any.type_url === typeUrl && previous.name === name && previous.any.value.equals(bytes)) {
    return previous;
  }
  return Object.freeze({ name, version: contentVersion(bytes), any: Object.freeze({ type_url: typeUrl, value: bytes }), message });
}

/** Encodes `message` as `typeUrl` and wraps it (see versionedBytes). */
export function versioned(typeUrl: TypeUrl, name: string, message: object, previous?: VersionedResource): VersionedResource {
  return versionedBytes(typeUrl, name, encodeMessage(typeUrl, message), message, previous);
}

const VIRTUAL_HOST_TYPE = 'type.googleapis.com/envoy.config.route.v3.VirtualHost';

/** The bytes of one VirtualHost, to be framed into route tables without re-encoding it per table. */
export function encodeVirtualHost(vhost: object): Buffer {
  return encodeMessage(VIRTUAL_HOST_TYPE, vhost);
}

/**
 * Encodes RouteConfiguration { name = 1; repeated VirtualHost virtual_hosts = 2 } from pre-encoded vhosts.
 * Produces the same bytes as encoding the whole message (protobufjs writes fields in number order).
 */
export function encodeRouteTable(name: string, vhostBytes: readonly Uint8Array[]): Buffer {
  const w = protobuf.Writer.create();
  if (name !== '') w.uint32((1 << 3) | 2).string(name);
  for (const b of vhostBytes) w.uint32((2 << 3) | 2).bytes(b);
  return Buffer.from(w.finish());
}

export const ROUTE_TYPE: TypeUrl = TYPE_URL.route;
