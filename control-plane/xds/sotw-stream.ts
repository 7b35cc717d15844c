// State-of-the-world ADS (StreamAggregatedResources): CDS/LDS responses carry the whole type, EDS/RDS only what changed.
import { createHash } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import {
  type DiscoveryRequest__Output,
  type DiscoveryResponse,
  TYPE_URL,
  type TypeUrl,
  type AnyMessage,
} from '../../proto/index.ts';
import type { ResourcesByName, VersionedResource } from '../cache/snapshot.ts';
import { type EncodedResources, encodeSotwResources, withEncodedResources } from './encode.ts';
import { tracer } from './log.ts';
import { rawNamesOf, stableRun } from './request-names.ts';
import { mentions, nackedNames, type ResourceStatus } from './status.ts';
import { AdsStreamBase, type Changed, ALL, endpointNamesOf, payloadBytes } from './stream-base.ts';
import { changedBetween, internNames } from './shared-state.ts';
import { newNonce, resourcesOf, type StreamDeps } from './stream-io.ts';

const trace = tracer('xds');

interface SentRecord {
  readonly nonce: string;
  readonly version: string;
  /** The type's resources at send time (shared, immutable) and the names subscribed then (null: wildcard). */
  readonly resources: ResourcesByName;
  readonly names: ReadonlySet<string> | null;
  /** EDS/RDS: the names this (incremental) response carried; undefined for a full-state response. */
  readonly carried?: readonly string[];
  /** snapshot.changedAt of the earliest change this response carried, when a publish caused it. */
  readonly changedAt: number | undefined;
}

interface TypeState {
  wildcard: boolean;
  /** A request of this type has listed names ("*" or others): an empty list no longer means the legacy wildcard. */
  explicit: boolean;
  names: ReadonlySet<string>;
  /** A publish changed something this stream subscribes to. */
  dirty: boolean;
  /** A request must be answered even if the version did not change (first request, new subscription). */
  mustRespond: boolean;
  changedAt: number | undefined;
  /** EDS/RDS: names changed since the last response (ALL: look at every subscribed name). */
  changed: Set<string> | typeof ALL;
  /** EDS/RDS: names subscribed since the last response (ALL: the first request). */
  added: Set<string> | typeof ALL;
  /** EDS: subscribed names to send even if the client holds their version (their Cluster changed: warming). */
  resend: Set<string>;
  /** EDS/RDS: names offered again after a NACK that did not name them (once: NACKed again, they are not). */
  retried: Set<string>;
  lastSent: SentRecord | undefined;
  lastAcked: SentRecord | undefined;
  /** The last response the client ACKed or NACKed. */
  lastAnswered: SentRecord | undefined;
}

/** Per resource map: the wildcard response (list and version) is computed once and shared by every stream. */
const wildcardCache = new WeakMap<ResourcesByName, { anys: AnyMessage[]; version: string; encoded?: EncodedResources }>();

function versionOf(resources: Iterable<VersionedResource>): string {
  const hash = createHash('sha256');
  for (const r of resources) hash.update(r.name).update('\0').update(r.version).update('\n');
  return hash.digest('hex').slice(0, 16);
}

function wildcardResponse(map: ResourcesByName): { anys: AnyMessage[]; version: string; encoded?: EncodedResources } {
  let hit = wildcardCache.get(map);
  if (!hit) {
    const sorted = [...map.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    hit = { anys: sorted.map((r) => r.any), version: versionOf(sorted) };
    wildcardCache.set(map, hit);
  }
  return hit;
}

function namedResponse(map: ResourcesByName, names: ReadonlySet<string>): { anys: AnyMessage[]; version: string; encoded?: EncodedResources } {
  const found: VersionedResource[] = [];
  for (const name of names) {
    const r = map.get(name);
    if (r) found.push(r);
  }
  found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { anys: found.map((r) => r.any), version: versionOf(found) };
}

/**
 * The current resources of a type for a one-off request (the per-type services' Fetch*, REST-over-gRPC): the names
 * asked for, or every resource for CDS and LDS when none are named (or `*`), with the version a stream would send.
 */
export function fetchResponse(map: ResourcesByName, typeUrl: TypeUrl, names: readonly string[]): { anys: AnyMessage[]; version: string } {
  if (isWildcard(typeUrl, names, false)) return wildcardResponse(map);
  return namedResponse(map, new Set(names));
}

/**
 * LDS and CDS may be wildcard: `*`, or an empty list while no request of the type has listed names (the legacy
 * wildcard). Once names were listed, an empty list unsubscribes from everything.
 */
function isWildcard(typeUrl: TypeUrl, names: readonly string[], explicit: boolean): boolean {
  if (names.includes('*')) return true;
  if (names.length > 0) return false;
  if (typeUrl !== TYPE_URL.cluster && typeUrl !== TYPE_URL.listener) return false;
  return !explicit;
}

/**
 * Per the xDS protocol, SotW Listener and Cluster responses are the complete state, while RouteConfiguration and
 * ClusterLoadAssignment responses are incremental: a resource left out keeps what the client has. So EDS and RDS
 * responses carry only resources that changed or were newly subscribed (grpc-js-xds and Envoy treat them so).
 */
function isIncremental(typeUrl: TypeUrl, wildcard: boolean): boolean {
  return !wildcard && (typeUrl === TYPE_URL.endpoint || typeUrl === TYPE_URL.route);
}

/** A version for an incremental response: the previous one chained with what this one carries. */
function chainVersion(previous: string, carried: readonly VersionedResource[]): string {
  const hash = createHash('sha256').update(previous).update('\n');
  for (const r of carried) hash.update(r.name).update('\0').update(r.version).update('\n');
  return hash.digest('hex').slice(0, 16);
}

function byName(a: VersionedResource, b: VersionedResource): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Whether a request lists exactly the subscribed names (`*` aside). A SotW client repeats its whole list on every
 * ACK, usually in the order it first sent it, which is the set's order: comparing in step needs no hashing of the
 * thousands of freshly decoded strings. Any other order falls back to set lookups.
 */
/**
 * Per kind of subscription and interned name set, the wire bytes of the resource_names that made it (shared by its
 * streams). The kind matters: the set leaves out `*`, and the same bytes mean the same thing only in the same kind
 * (`[]` keeps a legacy wildcard, but unsubscribes from an explicit one).
 */
const subscriptionBytes = {
  legacy: new WeakMap<ReadonlySet<string>, Buffer>(),
  wildcard: new WeakMap<ReadonlySet<string>, Buffer>(),
  named: new WeakMap<ReadonlySet<string>, Buffer>(),
};

function bytesOfKind(st: TypeState): WeakMap<ReadonlySet<string>, Buffer> {
  return st.wildcard ? (st.explicit ? subscriptionBytes.wildcard : subscriptionBytes.legacy) : subscriptionBytes.named;
}

/** Equal bytes; the request reader hands out one buffer per recent run, so equal runs are usually one object. */
function sameBytes(a: Buffer | undefined, b: Buffer): boolean {
  return a !== undefined && (a === b || a.equals(b));
}

function sameNames(a: ReadonlySet<string>, b: readonly string[]): boolean {
  const inOrder = a.values();
  let same = true;
  for (const name of b) {
    if (name === '*') continue;
    const next = inOrder.next();
    if (next.done || next.value !== name) {
      same = false;
      break;
    }
  }
  if (same) return inOrder.next().done === true;
  const listed = new Set<string>();
  for (const name of b) {
    if (name === '*') continue;
    if (!a.has(name)) return false;
    listed.add(name);
  }
  return listed.size === a.size;
}

export class SotwStream extends AdsStreamBase<DiscoveryRequest__Output, DiscoveryResponse> {
  readonly mode = 'sotw' as const;
  private readonly types = new Map<TypeUrl, TypeState>();

  constructor(call: grpc.ServerDuplexStream<DiscoveryRequest__Output, DiscoveryResponse>, deps: StreamDeps, only?: TypeUrl) {
    super(call, deps, only);
  }

  protected handleRequest(req: DiscoveryRequest__Output, typeUrl: TypeUrl): void {
    let st = this.types.get(typeUrl);
    if (!st) {
      const names = req.resource_names;
      st = {
        wildcard: isWildcard(typeUrl, names, false),
        explicit: names.length > 0,
        names: this.internAll(typeUrl, names),
        dirty: false,
        mustRespond: true,
        changedAt: undefined,
        changed: new Set(),
        added: ALL,
        resend: new Set(),
        retried: new Set(),
        lastSent: undefined,
        lastAcked: undefined,
        lastAnswered: undefined,
      };
      this.types.set(typeUrl, st);
      this.remember(st, req);
      this.record?.subscribed(typeUrl, st.wildcard, st.names.size);
      return;
    }
    const nonce = req.response_nonce;
    const sent = st.lastSent;
    if (nonce !== '' && nonce !== sent?.nonce) {
      // A stale request: the client has not seen our latest response yet; it will answer that one.
      trace('stale nonce ignored', { nodeId: this.nodeId, typeUrl, nonce, latest: sent?.nonce });
      return;
    }
    if (nonce !== '' && sent) {
      st.lastAnswered = sent;
      if (req.error_detail) {
        const message = req.error_detail.message || `NACK with code ${req.error_detail.code}`;
        const sentNames = sent.carried ?? (sent.names ? [...sent.names].filter((n) => sent.resources.has(n)) : sent.resources.keys());
        this.nacked(typeUrl, nonce, sent.version, message, nackedNames(message, sentNames));
        // EDS/RDS go one resource at a time: a response the proxy rejected whole took the resources it did not name
        // down with the ones it did. Those are offered again, once (as delta does): see DeltaStream.onAckOrNack.
        if (sent.carried && isIncremental(typeUrl, st.wildcard)) {
          const blamed = sent.carried.filter((name) => mentions(message, name));
          for (const name of blamed.length > 0 ? sent.carried : []) {
            if (blamed.includes(name) || st.retried.has(name)) continue;
            st.resend.add(name);
            st.retried.add(name);
            st.dirty = true;
          }
        }
      } else {
        st.retried.clear();
        st.lastAcked = sent;
        this.acked(typeUrl, nonce, sent.version, sent.changedAt);
      }
    }
    // The same bytes as the request that made this subscription: the same names (the common ACK).
    const raw = rawNamesOf(req);
    if (nonce !== '' && raw !== undefined && sameBytes(bytesOfKind(st).get(st.names), raw)) return;
    const names = req.resource_names;
    const wildcard = isWildcard(typeUrl, names, st.explicit);
    if (names.length > 0) st.explicit = true;
    if (nonce === '' || wildcard !== st.wildcard || !sameNames(st.names, names)) {
      const before = st.names;
      st.wildcard = wildcard;
      st.names = this.internAll(typeUrl, names);
      this.remember(st, req);
      if (nonce === '') st.added = ALL;
      else if (st.added !== ALL) for (const name of st.names) if (!before.has(name)) st.added.add(name);
      st.mustRespond = true;
      this.record?.subscribed(typeUrl, st.wildcard, st.names.size);
    } else {
      // The same subscription (names in another order, or `*` listed where it was the legacy wildcard).
      this.remember(st, req);
    }
  }

  /** Keeps the raw names of the request that made a (shared) subscription set, to recognise repeats cheaply. */
  private remember(st: TypeState, req: DiscoveryRequest__Output): void {
    const raw = rawNamesOf(req);
    const known = bytesOfKind(st);
    if (raw !== undefined && !known.has(st.names)) known.set(st.names, stableRun(raw));
  }

  /** The subscribed names, using the snapshot's own strings, as one set shared by streams with the same subscription. */
  private internAll(typeUrl: TypeUrl, names: readonly string[]): ReadonlySet<string> {
    const map = resourcesOf(this.view, typeUrl);
    const set = new Set<string>();
    for (const name of names) if (name !== '*') set.add(map.get(name)?.name ?? name);
    return internNames(set);
  }

  protected subscribes(typeUrl: TypeUrl): boolean {
    return this.types.has(typeUrl);
  }

  protected acknowledged(typeUrl: TypeUrl): boolean {
    const st = this.types.get(typeUrl);
    return st?.lastSent === undefined || st.lastAcked === st.lastSent;
  }

  protected answered(typeUrl: TypeUrl): boolean {
    const st = this.types.get(typeUrl);
    return st?.lastSent === undefined || st.lastAnswered === st.lastSent;
  }

  protected markChanged(typeUrl: TypeUrl, changed: Changed, changedAt: number): void {
    const st = this.types.get(typeUrl);
    if (!st) return;
    let touches = false;
    if (changed === ALL || st.wildcard) {
      touches = changed === ALL || changed.size > 0;
    } else if (changed.size <= st.names.size) {
      for (const name of changed) if (st.names.has(name)) touches = true;
    } else {
      for (const name of st.names) if (changed.has(name)) touches = true;
    }
    if (!touches) return;
    if (st.changed !== ALL) {
      if (changed === ALL) st.changed = ALL;
      else for (const name of changed) if (st.names.has(name)) st.changed.add(name);
    }
    st.dirty = true;
    st.changedAt = st.changedAt === undefined ? changedAt : Math.min(st.changedAt, changedAt);
  }

  protected resendEndpoints(names: readonly string[], changedAt: number | undefined): void {
    const st = this.types.get(TYPE_URL.endpoint);
    if (!st) return;
    let touches = false;
    for (const name of names) {
      if (!st.names.has(name)) continue;
      st.resend.add(name);
      touches = true;
    }
    if (!touches) return;
    st.dirty = true;
    if (changedAt !== undefined) st.changedAt = st.changedAt === undefined ? changedAt : Math.min(st.changedAt, changedAt);
  }

  protected hasPending(typeUrl: TypeUrl): boolean {
    const st = this.types.get(typeUrl);
    return st !== undefined && (st.dirty || st.mustRespond);
  }

  protected flushType(typeUrl: TypeUrl): void {
    const st = this.types.get(typeUrl);
    if (!st) return;
    if (isIncremental(typeUrl, st.wildcard)) {
      this.flushIncremental(typeUrl, st);
      return;
    }
    st.changed = new Set();
    st.added = new Set();
    const map = resourcesOf(this.view, typeUrl);
    const response = st.wildcard ? wildcardResponse(map) : namedResponse(map, st.names);
    const { anys, version } = response;
    const mustRespond = st.mustRespond || st.resend.size > 0;
    if (st.resend.size > 0) st.resend = new Set();
    const changedAt = st.changedAt;
    st.dirty = false;
    st.mustRespond = false;
    st.changedAt = undefined;
    // The client already holds this exact set (a change that reverted, or a NACKed version): do not resend it.
    if (!mustRespond && st.lastSent?.version === version) return;
    if (typeUrl === TYPE_URL.cluster) this.awaitEndpoints(() => endpointNamesOf(map, newlySent(st, map)));
    else if (typeUrl === TYPE_URL.endpoint) for (const name of st.wildcard ? map.keys() : st.names) this.endpointsSent(name);
    const nonce = newNonce();
    st.lastSent = { nonce, version, resources: map, names: st.wildcard ? null : st.names, changedAt };
    // The wildcard response's bytes are encoded once per map and shared by every stream that sends it.
    const encoded = (response.encoded ??= encodeSotwResources(anys));
    const message = withEncodedResources({ version_info: version, resources: anys, type_url: typeUrl, nonce }, encoded);
    this.sent(typeUrl, message, payloadBytes(anys), nonce, version);
  }

  /** EDS/RDS: sends the subscribed resources whose version the client lacks (changed or newly subscribed). */
  private flushIncremental(typeUrl: TypeUrl, st: TypeState): void {
    const map = resourcesOf(this.view, typeUrl);
    const prev = st.lastSent;
    const everything = st.changed === ALL || st.added === ALL || !prev;
    const resend = st.resend;
    const carried: VersionedResource[] = [];
    const look = (name: string, isNew: boolean): void => {
      if (!st.names.has(name)) return;
      const r = map.get(name);
      if (!r) return;
      const held = isNew || resend.has(name) || !prev?.names?.has(name) ? undefined : prev.resources.get(name);
      if (held?.version !== r.version) {
        carried.push(r);
        if (typeUrl === TYPE_URL.endpoint) this.endpointsSent(name);
      }
    };
    if (everything) {
      const added = st.added;
      for (const name of st.names) look(name, added === ALL || added.has(name));
    } else {
      const added = st.added as Set<string>;
      for (const name of added) look(name, true);
      for (const name of resend) if (!added.has(name)) look(name, true);
      for (const name of st.changed as Set<string>) if (!added.has(name) && !resend.has(name)) look(name, false);
    }
    const mustRespond = st.mustRespond;
    const changedAt = st.changedAt;
    st.dirty = false;
    st.mustRespond = false;
    st.changedAt = undefined;
    st.changed = new Set();
    st.added = new Set();
    if (resend.size > 0) st.resend = new Set();
    if (carried.length === 0 && !mustRespond) {
      // Nothing the client lacks: it holds this map's version of every subscribed name now (the old map can go).
      if (prev && prev.resources !== map) {
        const moved = { ...prev, resources: map, names: st.names };
        if (st.lastAcked === prev) st.lastAcked = moved;
        if (st.lastAnswered === prev) st.lastAnswered = moved;
        st.lastSent = moved;
      }
      return;
    }
    carried.sort(byName);
    const version = chainVersion(prev?.version ?? '', carried);
    const nonce = newNonce();
    const anys = carried.map((r) => r.any);
    st.lastSent = { nonce, version, resources: map, names: st.names, carried: carried.map((r) => r.name), changedAt };
    const message = withEncodedResources({ version_info: version, resources: anys, type_url: typeUrl, nonce }, encodeSotwResources(anys));
    this.sent(typeUrl, message, payloadBytes(anys), nonce, version);
  }

  protected *resourceStatus(typeUrl: TypeUrl): Iterable<ResourceStatus> {
    const st = this.types.get(typeUrl);
    const sent = st?.lastSent;
    if (!st || !sent) return;
    const acked = st.lastAcked;
    const names = sent.names ?? sent.resources.keys();
    for (const name of names) {
      const r = sent.resources.get(name);
      if (!r) continue;
      const ackedHas = acked && (acked.names === null || acked.names.has(name));
      yield { name, sentVersion: r.version, ackedVersion: (ackedHas && acked.resources.get(name)?.version) || null };
    }
  }
}

/** The names a CDS response over `map` carries that the last one did not (all of them on the first). */
function newlySent(st: TypeState, map: ResourcesByName): string[] {
  const before = st.lastSent?.resources;
  const sends = (name: string): boolean => map.has(name) && (st.wildcard || st.names.has(name)) && before?.has(name) !== true;
  if (before === undefined) return [...(st.wildcard ? map.keys() : st.names)].filter(sends);
  return changedBetween(before, map).filter(sends);
}
