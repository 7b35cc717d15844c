// Encodes resources once into Any with a content-hash version, reusing the previous object when bytes are equal.
import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import type { TypeUrl } from '../../proto/index.ts';
import { encodeMessage, TYPE_URL, vhdsResourceName } from '../../proto/index.ts';
import type { ResourcesByName, VersionedResource } from './snapshot.ts';

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

const VIRTUAL_HOST_TYPE = TYPE_URL.virtualHost;

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

/** Versions of shared vhost encodings: a vhost's bytes are the same in every namespace that sees it the same way. */
const bytesVersions = new WeakMap<Buffer, string>();

function versionOf(bytes: Buffer): string {
  let v = bytesVersions.get(bytes);
  if (v === undefined) bytesVersions.set(bytes, (v = contentVersion(bytes)));
  return v;
}

/**
 * The VHDS resource of one virtual host of `routeConfigName`, named `<route configuration name>/<vhost name>`;
 * `previous` (that table's last VHDS map) keeps its resource when the bytes are the same. The bytes are the ones the
 * route table is framed from (shared with it, and hashed once however many namespaces see them).
 */
export function virtualHostResource(
  routeConfigName: string,
  vhostName: string,
  bytes: Buffer,
  message: object,
  previous: ResourcesByName | undefined,
): VersionedResource {
  const name = vhdsResourceName(routeConfigName, vhostName);
  const old = previous?.get(name);
  if (old && (old.any.value === bytes || old.any.value.equals(bytes))) return old;
  // Each resource its own Any: responses cache an encoded Resource{name, version, resource} per Any.
  return Object.freeze({ name, version: versionOf(bytes), any: Object.freeze({ type_url: VIRTUAL_HOST_TYPE, value: bytes }), message });
}

/** A route table as VHDS clients get it: no virtual hosts, and `vhds` from ADS (the virtual hosts follow as VHDS resources). */
export function vhdsRouteTable(name: string): VersionedResource {
  return versioned(TYPE_URL.route, name, { name, vhds: { config_source: { ads: {}, resource_api_version: 'V3' } } });
}
