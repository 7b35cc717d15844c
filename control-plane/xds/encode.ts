// The ADS write path: each resource's wire bytes are encoded once and shared by every response (and stream) that sends it.
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { type AnyMessage, messageRoot } from '../../proto/index.ts';
import type { VersionedResource } from '../cache/snapshot.ts';

/** A response's `resources` field, already encoded: serialize() writes the other fields and appends these bytes. */
const ENCODED = Symbol('skein.encodedResources');

type WithEncoded = { [ENCODED]?: EncodedResources };

/** A response's resources as their shared encoded entries (concatenated only once, into the final message). */
export type EncodedResources = readonly Buffer[];

let fields: { sotw: number; delta: number; resourceType: protobuf.Type } | undefined;

function fieldIds(): NonNullable<typeof fields> {
  if (!fields) {
    const root = messageRoot();
    const sotw = root.lookupType('envoy.service.discovery.v3.DiscoveryResponse').fields.resources?.id;
    const delta = root.lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse').fields.resources?.id;
    if (sotw === undefined || delta === undefined) throw new Error('discovery response has no resources field');
    fields = { sotw, delta, resourceType: root.lookupType('envoy.service.discovery.v3.Resource') };
  }
  return fields;
}

/** One length-delimited field entry: tag, length, bytes. */
function entry(fieldId: number, bytes: Uint8Array): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((fieldId << 3) | 2).bytes(bytes);
  return Buffer.from(w.finish());
}

const anyEntries = new WeakMap<AnyMessage, Buffer>();
const deltaEntries = new WeakMap<AnyMessage, Buffer>();

/** DiscoveryResponse.resources entry for an Any (cached per resource). */
function sotwEntry(any: AnyMessage): Buffer {
  let hit = anyEntries.get(any);
  if (!hit) {
    const anyType = messageRoot().lookupType('google.protobuf.Any');
    hit = entry(fieldIds().sotw, anyType.encode(anyType.fromObject(any)).finish());
    anyEntries.set(any, hit);
  }
  return hit;
}

/** DeltaDiscoveryResponse.resources entry for Resource{name, version, resource} (cached per resource). */
function deltaEntry(r: VersionedResource): Buffer {
  let hit = deltaEntries.get(r.any);
  if (!hit) {
    const { resourceType, delta } = fieldIds();
    const message = resourceType.fromObject({ name: r.name, version: r.version, resource: r.any });
    hit = entry(delta, resourceType.encode(message).finish());
    deltaEntries.set(r.any, hit);
  }
  return hit;
}

/** The encoded `resources` of a SotW response carrying these Anys. */
export function encodeSotwResources(anys: readonly AnyMessage[]): EncodedResources {
  return anys.map(sotwEntry);
}

/** The encoded `resources` of a delta response carrying these resources. */
export function encodeDeltaResources(resources: readonly VersionedResource[]): EncodedResources {
  return resources.map(deltaEntry);
}

/** Marks a response as carrying pre-encoded resources (the `resources` array stays for tests and logs). */
export function withEncodedResources<T extends object>(response: T, encoded: EncodedResources): T {
  Object.defineProperty(response, ENCODED, { value: encoded, enumerable: false });
  return response;
}

/**
 * Responses up to this size are assembled in the shared scratch buffer; larger ones get a buffer of their own, so
 * one huge response does not pin its size for the process's life.
 */
const SCRATCH_UP_TO = 16 * 1024 * 1024;
let scratch: Buffer | undefined;

/**
 * Where a response is assembled. grpc-js copies whatever the serializer returns into a new buffer with the
 * gRPC frame header before serializeMessage() returns (server-interceptors.js), so the serializer's own bytes are
 * dead at once: one buffer reused for all of them saves an allocation, a copy's worth of page faults and the GC
 * work per response (a 1000-proxy push makes 1000 of them; small ones too: 1000 endpoint updates of 1.8 KB were 1.8 MB
 * of buffers per change). test/control-plane/xds/encode.test.ts checks, through a real grpc-js server and client,
 * that queued responses, small and large, still arrive intact.
 */
function scratchFor(length: number): Buffer | undefined {
  if (length > SCRATCH_UP_TO) return undefined;
  if (scratch === undefined || scratch.length < length) {
    scratch = Buffer.allocUnsafeSlow(Math.min(SCRATCH_UP_TO, Math.max(length, 2 * (scratch?.length ?? 0))));
  }
  return scratch;
}

/** How a response message is laid out: its string fields by field number and where `resources` goes. */
interface Layout {
  /** Fields in field-number order; `resources` is the pre-encoded entries' place. */
  readonly fields: readonly { readonly key: string; readonly tag: number; readonly repeated: boolean; readonly resources: boolean }[];
  readonly keys: ReadonlySet<string>;
  readonly repeated: ReadonlySet<string>;
}

const layouts = new Map<string, Layout>();

/** The layout of a response type written by hand: string fields (single or repeated) and `resources`, nothing else. */
function layoutOf(typeName: string): Layout {
  let hit = layouts.get(typeName);
  if (!hit) {
    const type = messageRoot().lookupType(typeName);
    const fields = type.fieldsArray
      .filter((f) => f.name === 'resources' || f.type === 'string')
      .sort((a, b) => a.id - b.id)
      .map((f) => ({ key: f.name, tag: (f.id << 3) | 2, repeated: f.repeated, resources: f.name === 'resources' }));
    if (fields.some((f) => f.tag > 0x7f)) throw new Error(`${typeName}: a field number too large for one-byte tags`);
    hit = { fields, keys: new Set(fields.map((f) => f.key)), repeated: new Set(fields.filter((f) => f.repeated).map((f) => f.key)) };
    layouts.set(typeName, hit);
  }
  return hit;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n >>>= 7;
    len++;
  }
  return len;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}

/** Bytes of a string field: one-byte tag, length, UTF-8. */
function stringLength(s: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  return 1 + varintLength(n) + n;
}

function writeString(out: Buffer, at: number, tag: number, s: string): number {
  out[at++] = tag;
  at = writeVarint(out, at, Buffer.byteLength(s, 'utf8'));
  return at + out.write(s, at, 'utf8');
}

/** Whether a response has only fields the layout writes by hand (anything else goes through protobufjs). */
function handWritable(value: Record<string, unknown>, layout: Layout): boolean {
  for (const key in value) {
    const v = value[key];
    if (v === undefined || v === null) continue;
    if (!layout.keys.has(key)) return false;
    if (key === 'resources') continue;
    if (layout.repeated.has(key)) {
      if (!Array.isArray(v)) return false;
      for (const item of v) if (typeof item !== 'string') return false;
    } else if (typeof v !== 'string') return false;
  }
  return true;
}

/**
 * Writes a response whose other fields are strings straight into bytes, in field-number order with the shared
 * resource entries in `resources`' place: the same bytes protobufjs writes (a string present, even empty, is
 * written, as protobufjs does for a set proto3 field), without building protobufjs messages per stream and
 * response. A 1000-proxy push writes 1000 such responses that differ only in their nonce.
 */
function writeByHand(value: Record<string, unknown>, encoded: EncodedResources, layout: Layout): Buffer {
  let length = 0;
  for (const f of layout.fields) {
    if (f.resources) {
      for (const part of encoded) length += part.length;
      continue;
    }
    const v = value[f.key];
    if (typeof v === 'string') length += stringLength(v);
    else if (Array.isArray(v)) for (const item of v as string[]) length += stringLength(item);
  }
  const out = scratchFor(length) ?? Buffer.allocUnsafeSlow(length);
  let at = 0;
  for (const f of layout.fields) {
    if (f.resources) {
      for (const part of encoded) at += part.copy(out, at);
      continue;
    }
    const v = value[f.key];
    if (typeof v === 'string') at = writeString(out, at, f.tag, v);
    else if (Array.isArray(v)) for (const item of v as string[]) at = writeString(out, at, f.tag, item);
  }
  return out.length === length ? out : out.subarray(0, length);
}

/**
 * Wraps a method's response serializer: a response with pre-encoded resources is written as its other fields
 * followed by the shared resource bytes: by hand when they are all strings (writeByHand), else encoded by the
 * original serializer with `resources` empty and the resource bytes appended. Protobuf parsers accept fields in
 * any order and append repeated ones, so either way the bytes decode to the same message.
 */
function fastSerializer<T extends object>(original: (value: T) => Buffer, typeName: string): (value: T) => Buffer {
  return (value: T) => {
    const encoded = (value as WithEncoded)[ENCODED];
    if (!encoded) return original(value);
    const layout = layoutOf(typeName);
    if (handWritable(value as Record<string, unknown>, layout)) return writeByHand(value as Record<string, unknown>, encoded, layout);
    const head = original({ ...value, resources: [] });
    let length = head.length;
    for (const part of encoded) length += part.length;
    const out = scratchFor(length);
    if (out === undefined) return Buffer.concat([head, ...encoded], length);
    let at = head.copy(out, 0);
    for (const part of encoded) at += part.copy(out, at);
    return out.subarray(0, length);
  };
}

const RESPONSE_TYPES: Record<string, string> = {
  StreamAggregatedResources: 'envoy.service.discovery.v3.DiscoveryResponse',
  DeltaAggregatedResources: 'envoy.service.discovery.v3.DeltaDiscoveryResponse',
};

/** The ADS service definition with both streaming methods using the shared-bytes serializer. */
export function withSharedEncoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const [name, method] of Object.entries(service) as [string, grpc.MethodDefinition<object, object>][]) {
    const typeName = RESPONSE_TYPES[name];
    out[name] = typeName ? { ...method, responseSerialize: fastSerializer(method.responseSerialize, typeName) } : method;
  }
  return out as grpc.ServiceDefinition;
}
