// The ADS read path: a SotW request's resource_names decoded only when they differ from the subscription's.
import type * as grpc from '@grpc/grpc-js';
import { messageRoot } from '../../proto/index.ts';
import { isPooled, releaseBuffer } from './read-buffers.ts';

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

/** Where readVarint stopped (kept in a module variable so the hot loop allocates nothing). */
let varintEnd = 0;

/** A varint at `pos` (up to 2^53), or -1 when it runs past `end` or is longer than 10 bytes. */
function readVarint(bytes: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) return -1;
    const b = bytes[pos++] as number;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      varintEnd = pos;
      return value;
    }
    scale *= 128;
  }
  return -1;
}

/** Where a request's resource_names entries lie; `known`: the recent run (see stableRun) they are equal to. */
export interface NamesRun {
  readonly first: number;
  readonly end: number;
  readonly known: Buffer | undefined;
}

/**
 * Where the resource_names entries of an encoded request lie: one run [first, end), undefined when there are none,
 * null when the message is not one this scan handles (names split in several runs, groups, malformed bytes: the
 * caller decodes it the usual way, which reports errors as before). Plain loops over the bytes (protobufjs'
 * Reader was a visible part of an ACK's cost); and where the names start, a known run equal to the bytes there
 * (`own`: the runs this stream sent last, then the recent ones of all streams) is stepped over with one comparison
 * instead of a thousand entries.
 */
export function findNamesRun(bytes: Buffer, field: number, own?: readonly Buffer[]): NamesRun | undefined | null {
  const len = bytes.length;
  let first = -1;
  let end = -1;
  let known: Buffer | undefined;
  let pos = 0;
  while (pos < len) {
    const start = pos;
    const tag = readVarint(bytes, pos, len);
    if (tag < 0) return null;
    pos = varintEnd;
    const wire = tag % 8;
    const isName = Math.floor(tag / 8) === field;
    if (isName && first === -1 && wire === 2) {
      known = recentRunAt(bytes, start, own);
      if (known) {
        first = start;
        end = pos = start + known.length;
        continue;
      }
    }
    switch (wire) {
      case 0:
        if (readVarint(bytes, pos, len) < 0) return null;
        pos = varintEnd;
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const n = readVarint(bytes, pos, len);
        if (n < 0) return null;
        pos = varintEnd + n;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        return null;
    }
    if (pos > len) return null;
    if (!isName) continue;
    if (wire !== 2) return null;
    if (first !== -1 && start !== end) return null;
    if (first === -1) first = start;
    else known = undefined; // more names after a known run: the run is a longer one
    end = pos;
  }
  return first === -1 ? undefined : { first, end, known };
}

/**
 * Recently seen resource_names runs, most recent first, as buffers of their own. Most proxies repeat one of a few
 * subscriptions (the same names in the same order), so a request's run is usually equal to one of these: the
 * request then points at that buffer and keeps no view into the pooled buffer it arrived in.
 */
const recentRuns: Buffer[] = [];
const RECENT_RUNS = 32;
const RECENT_BYTES = 8 * 1024 * 1024;
let recentBytes = 0;

/** Moves a recent run to the front (most recent first). */
function touch(i: number): Buffer {
  const run = recentRuns[i] as Buffer;
  if (i > 0) {
    recentRuns.splice(i, 1);
    recentRuns.unshift(run);
  }
  return run;
}

/** The known run the bytes at `start` begin with, if any (a run is whole entries, so its end is an entry's end). */
function recentRunAt(bytes: Buffer, start: number, own: readonly Buffer[] = []): Buffer | undefined {
  const room = bytes.length - start;
  for (const run of own) if (run.length <= room && run.compare(bytes, start, start + run.length) === 0) return run;
  for (let i = 0; i < recentRuns.length; i++) {
    const run = recentRuns[i] as Buffer;
    if (run.length <= room && run.compare(bytes, start, start + run.length) === 0) return touch(i);
  }
  return undefined;
}

/** A buffer of its own with the bytes of `raw` (whole resource_names entries): a recent equal run, else a copy. */
export function stableRun(raw: Uint8Array): Buffer {
  for (let i = 0; i < recentRuns.length; i++) {
    const run = recentRuns[i] as Buffer;
    if (run.length === raw.length && run.equals(raw)) return touch(i);
  }
  const copy = Buffer.from(raw);
  if (copy.length > RECENT_BYTES) return copy;
  recentRuns.unshift(copy);
  recentBytes += copy.length;
  while (recentRuns.length > RECENT_RUNS || recentBytes > RECENT_BYTES) recentBytes -= (recentRuns.pop() as Buffer).length;
  return copy;
}

const FRAME_HEADER = 5;
/** Runs remembered per stream: one per type that lists names (EDS, RDS; CDS and LDS when not wildcard). */
const OWN_RUNS = 4;
/**
 * Ends every compacted request: an empty entry of the highest field number (unknown, so protobufjs skips it). A
 * compacted request read without its entry in `compacted` (were grpc-js to copy the bytes between its decoder and
 * the deserializer) fails loudly instead of reading as a request for no names.
 */
const COMPACT_MARKER = Buffer.from([0xfa, 0xff, 0xff, 0xff, 0x0f, 0x00]);
/** The resource_names run taken out of each compacted request, by its payload's buffer and offset. */
const compacted = new WeakMap<ArrayBufferLike, Map<number, Buffer>>();

/**
 * A framed gRPC request (flag, length, payload) without its resource_names entries, in a small buffer (Node's
 * pool), which the deserializer below reads with those names put back (as a recent run, see stableRun). Lets the
 * request decoder give the large buffer the request arrived in back at once. undefined when the request has no
 * names or is not one findNamesRun handles (the deserializer then reads it as it is). `own`: the runs of the
 * stream's last requests, most recent first, which this keeps up to date (a few, one per type).
 */
export function compactNames(framed: Buffer, own: Buffer[] = []): Buffer | undefined {
  const payload = framed.subarray(FRAME_HEADER);
  const run = findNamesRun(payload, resourceNamesField(), own);
  if (!run) return undefined;
  const known = run.known ?? stableRun(payload.subarray(run.first, run.end));
  const at = own.indexOf(known);
  if (at !== 0) {
    if (at > 0) own.splice(at, 1);
    own.unshift(known);
    if (own.length > OWN_RUNS) own.pop();
  }
  const length = payload.length - (run.end - run.first) + COMPACT_MARKER.length;
  const out = Buffer.allocUnsafe(FRAME_HEADER + length);
  framed.copy(out, 0, 0, 1);
  out.writeUInt32BE(length, 1);
  let to = FRAME_HEADER + payload.copy(out, FRAME_HEADER, 0, run.first);
  to += payload.copy(out, to, run.end);
  COMPACT_MARKER.copy(out, to);
  let byOffset = compacted.get(out.buffer);
  if (!byOffset) compacted.set(out.buffer, (byOffset = new Map()));
  byOffset.set(out.byteOffset + FRAME_HEADER, known);
  return out;
}

/** The names taken out of a compacted request (once), undefined for any other; throws for one that lost them. */
function takeCompacted(bytes: Buffer): Buffer | undefined {
  const byOffset = compacted.get(bytes.buffer);
  const known = byOffset?.get(bytes.byteOffset);
  if (known) {
    byOffset?.delete(bytes.byteOffset);
    return known;
  }
  const tail = bytes.length - COMPACT_MARKER.length;
  if (tail >= 0 && COMPACT_MARKER.compare(bytes, tail) === 0) throw new Error('compacted request read without its resource_names');
  return undefined;
}

/** Gives a decoded request its resource_names as raw bytes, decoded into strings on first read. */
function withRawNames<T extends object>(message: T, raw: Buffer, original: (bytes: Buffer) => T): T {
  let names: unknown;
  Object.defineProperty(message, 'resource_names', {
    enumerable: true,
    configurable: true,
    get: () => (names ??= (original(raw) as { resource_names?: unknown }).resource_names),
  });
  Object.defineProperty(message, RAW_NAMES, { value: raw });
  return message;
}

/**
 * Wraps the SotW request deserializer. A SotW client repeats its whole subscription (thousands of names) in every
 * ACK; decoding those strings was most of the cost of an ACK. The wrapper finds the resource_names entries,
 * decodes the rest of the message, and decodes the names only when `resource_names` is read; the stream first
 * compares the raw bytes with those of the subscription it already has. The request keeps no view into `bytes`,
 * so a pooled buffer (read-buffers.ts) is given back for the next message as soon as it is read.
 */
function lazyNamesDeserializer<T extends object>(original: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes: Buffer) => {
    const known = takeCompacted(bytes);
    if (known) return withRawNames(original(bytes), known, original);
    const pooled = isPooled(bytes);
    const run = findNamesRun(bytes, resourceNamesField());
    if (!run) {
      // protobufjs may keep views into the bytes it reads (bytes fields): decode a copy of a pooled buffer.
      const message = original(pooled ? Buffer.from(bytes) : bytes);
      releaseBuffer(bytes);
      return message;
    }
    const { first, end } = run;
    const message = original(Buffer.concat([bytes.subarray(0, first), bytes.subarray(end)]));
    const raw = run.known ?? (pooled ? stableRun(bytes.subarray(first, end)) : bytes.subarray(first, end));
    releaseBuffer(bytes);
    return withRawNames(message, raw, original);
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
