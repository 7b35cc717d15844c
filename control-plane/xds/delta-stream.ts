// Incremental ADS (DeltaAggregatedResources): sends only resources whose version the client lacks, and removals.
import type * as grpc from '@grpc/grpc-js';
import {
  type DeltaDiscoveryRequest__Output,
  type DeltaDiscoveryResponse,
  type Resource,
  TYPE_URL,
  type TypeUrl,
} from '../../proto/index.ts';
import type { ResourcesByName, VersionedResource } from '../cache/snapshot.ts';
import { encodeDeltaResources, withEncodedResources } from './encode.ts';
import { tracer } from './log.ts';
import { EMPTY_NAMES, HeldResources, editNames } from './shared-state.ts';
import { mentions, nackedNames, type ResourceStatus } from './status.ts';
import { AdsStreamBase, ALL, endpointNamesOf, type Changed } from './stream-base.ts';
import { newNonce, resourcesOf, type StreamDeps } from './stream-io.ts';

const trace = tracer('xds');

/** Responses not ACKed yet kept per type; older ones are dropped (their ACK would be stale anyway). */
const MAX_INFLIGHT = 32;
/** Per-stream overrides of "what the client holds" above which it is re-based on the current snapshot map. */
const HELD_OVERRIDE_LIMIT = 64;

interface InflightResponse {
  /** Increases per response of the type; unacked entries carry the seq of the response that sent them. */
  readonly seq: number;
  readonly systemVersion: string;
  readonly changedAt: number | undefined;
}

interface Unacked {
  /** The version sent; undefined: the name was sent in removed_resources. */
  readonly version: string | undefined;
  /** The version the client had ACKed before (undefined: none). */
  readonly acked: string | undefined;
  /** What the client held before this response, had the responses before it been taken (what a NACK puts back). */
  readonly prev: string | undefined;
  readonly seq: number;
  /** The response carrying it was NACKed and the NACK named it (or named none of the response): the client kept `acked`. */
  rejected: boolean;
  /** Sent again because a NACK dropped it with the response it came in without naming it (done once: see `retry`). */
  readonly retried: boolean;
}

interface TypeState {
  wildcard: boolean;
  /** Names subscribed explicitly (besides a wildcard): interned, shared by streams with the same subscription. */
  names: ReadonlySet<string>;
  /** What the client holds or is being sent: name → version (a shared snapshot map plus per-stream overrides). */
  readonly known: HeldResources;
  /** Resources sent but not ACKed (or rejected), kept small: entries leave on ACK. */
  readonly unacked: Map<string, Unacked>;
  seq: number;
  /** Names to look at on the next flush (changed, subscribed, or held by the client on reconnect). */
  readonly pending: Set<string>;
  /** Look at every resource of the type (new wildcard subscription or a new scope). */
  pendingAll: boolean;
  /** Newly subscribed names: answered with removed_resources if they do not exist, so nobody waits for them. */
  readonly announceAbsent: Set<string>;
  /** Names to send on the next flush even if the client holds their version (re-subscribed, or a warming Cluster's CLA). */
  readonly resend: Set<string>;
  /**
   * Names a NACK dropped without naming them (the client rejects a response whole): offered again on the next
   * flush, once; if that response is NACKed too, they count as rejected, so a NACK never starts a resend loop.
   */
  readonly retry: Set<string>;
  mustRespond: boolean;
  changedAt: number | undefined;
  readonly inflight: Map<string, InflightResponse>;
}

/**
 * A type's state on a new stream. Made outside handleRequest on purpose: a closure made there would share V8's
 * context with handleRequest's other closures and keep its locals alive for the stream's life (the first request's
 * whole subscription, ~40 KB per type per stream: 41 MB at 1000 proxies).
 */
function newTypeState(wildcard: boolean): TypeState {
  const state: TypeState = {
    wildcard,
    names: EMPTY_NAMES,
    known: new HeldResources((name) => state.wildcard || state.names.has(name)),
    unacked: new Map(),
    pending: new Set(),
    pendingAll: false,
    announceAbsent: new Set(),
    resend: new Set(),
    retry: new Set(),
    mustRespond: true,
    changedAt: undefined,
    inflight: new Map(),
    seq: 0,
  };
  return state;
}

export class DeltaStream extends AdsStreamBase<DeltaDiscoveryRequest__Output, DeltaDiscoveryResponse> {
  readonly mode = 'delta' as const;
  private readonly types = new Map<TypeUrl, TypeState>();
  /**
   * CLAs of Clusters sent over an older version the client held (a reconnect with initial_resource_versions) before
   * its EDS request came: sent again when it comes, even at the version the client holds, as Envoy finishes warming
   * an updated Cluster only with a new ClusterLoadAssignment.
   */
  private warmOnSubscribe: Set<string> | undefined;

  constructor(call: grpc.ServerDuplexStream<DeltaDiscoveryRequest__Output, DeltaDiscoveryResponse>, deps: StreamDeps, only?: TypeUrl) {
    super(call, deps, only);
  }

  protected handleRequest(req: DeltaDiscoveryRequest__Output, typeUrl: TypeUrl): void {
    let st = this.types.get(typeUrl);
    const subscribe = req.resource_names_subscribe;
    /** On the first request, the names the client says it holds (not resent); later, every subscribed name is sent. */
    let resumed: Readonly<Record<string, string>> | undefined;
    if (!st) {
      resumed = req.initial_resource_versions ?? {};
      const canWildcard = typeUrl === TYPE_URL.cluster || typeUrl === TYPE_URL.listener || typeUrl === TYPE_URL.virtualHost;
      st = newTypeState(subscribe.includes('*') || (subscribe.length === 0 && canWildcard));
      this.types.set(typeUrl, st);
      st.pendingAll = st.wildcard;
      // On reconnect the client says what it holds: resources at these versions are not sent again.
      for (const [name, version] of Object.entries(req.initial_resource_versions ?? {})) {
        const key = this.intern(typeUrl, name);
        st.known.set(key, version);
        st.pending.add(key);
        if (this.warmOnSubscribe?.has(key)) st.resend.add(key);
      }
      if (typeUrl === TYPE_URL.endpoint) this.warmOnSubscribe = undefined;
    } else if (req.response_nonce !== '') {
      this.onAckOrNack(st, typeUrl, req);
      // A plain ACK or NACK (the common request): the subscription is unchanged.
      if (subscribe.length === 0 && req.resource_names_unsubscribe.length === 0) return;
    }
    // The subscription edit, applied at the end to the shared set (editNames: one copy for all streams making it).
    const added = new Set<string>();
    const removed = new Set<string>();
    const current = st.names;
    const has = (name: string): boolean => added.has(name) || (current.has(name) && !removed.has(name));
    for (const name of subscribe) {
      if (name === '*') {
        if (!st.wildcard) {
          st.pendingAll = true;
          for (const held of [...st.known.baseNames()]) if (!has(held)) st.known.enterScope(held);
        }
        st.wildcard = true;
        continue;
      }
      const key = this.intern(typeUrl, name);
      if (!has(key)) {
        if (!st.wildcard) st.known.enterScope(key);
        removed.delete(key);
        if (!current.has(key)) added.add(key);
      }
      if (!st.known.has(key)) st.announceAbsent.add(key);
      // Subscribing to a name the client holds is still answered with it: the client may have forgotten it.
      else if (resumed?.[name] === undefined) st.resend.add(key);
      st.pending.add(key);
    }
    for (const name of req.resource_names_unsubscribe) {
      if (name === '*') {
        st.wildcard = false;
        for (const held of [...st.known.keys()]) if (!has(held)) this.forget(st, held);
        continue;
      }
      const subscribed = has(name);
      if (subscribed) {
        added.delete(name);
        if (current.has(name)) removed.add(name);
      }
      st.announceAbsent.delete(name);
      if (!st.wildcard) this.forget(st, name);
      else if (subscribed) {
        // With "*" too, the client cannot tell whether the wildcard still covers the name: it is answered either
        // way, in resources if it exists (the wildcard has it), else in removed_resources.
        st.pending.add(name);
        st.resend.add(name);
        st.announceAbsent.add(name);
      }
    }
    if (added.size > 0 || removed.size > 0) st.names = editNames(current, [...added], [...removed]);
    this.record?.subscribed(typeUrl, st.wildcard, st.names.size);
    // A per-type EDS stream resuming after the node's CDS stream did: the Clusters that came updated warm (node-streams.ts).
    if (resumed !== undefined && this.only === TYPE_URL.endpoint && this.deps.nodes) {
      const warming = this.deps.nodes.warmingFor(this);
      if (warming.length > 0) this.resendOrHold(warming, undefined);
    }
  }

  /** The snapshot's own string for a name, so 1000 streams subscribed to it share one string. */
  private intern(typeUrl: TypeUrl, name: string): string {
    return resourcesOf(this.view, typeUrl).get(name)?.name ?? name;
  }

  private forget(st: TypeState, name: string): void {
    st.known.delete(name);
    st.unacked.delete(name);
    st.pending.delete(name);
    st.resend.delete(name);
  }

  private onAckOrNack(st: TypeState, typeUrl: TypeUrl, req: DeltaDiscoveryRequest__Output): void {
    const nonce = req.response_nonce;
    const response = st.inflight.get(nonce);
    if (!response) {
      trace('stale nonce ignored', { nodeId: this.nodeId, typeUrl, nonce });
      return;
    }
    // Responses are processed in order: everything sent before this one has been handled by the client.
    for (const key of st.inflight.keys()) {
      st.inflight.delete(key);
      if (key === nonce) break;
    }
    if (req.error_detail) {
      const message = req.error_detail.message || `NACK with code ${req.error_detail.code}`;
      const sentNames: string[] = [];
      for (const [name, u] of st.unacked) if (u.seq === response.seq) sentNames.push(name);
      // The client keeps its previous state for the whole response. When the NACK names some of its resources
      // (Envoy's, gRPC's and Skein's sidecar's do), the others were dropped with them: their ACKed versions are put
      // back and they are offered again, once. A resource the NACK names, every resource of a NACK that names none,
      // and one already offered again count as rejected: an update keeps its rejected version in `known` and is not
      // resent until it changes; a removal is sent again when its name is next looked at. So a NACK never starts a
      // resend loop, and one bad resource does not hold back the others.
      const blamed = new Set(sentNames.filter((name) => mentions(message, name)));
      for (const name of sentNames) {
        const u = st.unacked.get(name) as Unacked;
        if (blamed.size > 0 && !blamed.has(name) && !u.retried) {
          // (Were an earlier response for the same name rejected too, `prev` is a version the client lacks: the
          // name is resent all the same, which is what it needs.)
          if (u.prev === undefined) st.known.delete(name);
          else st.known.set(name, u.prev);
          st.unacked.delete(name);
          st.pending.add(name);
          st.retry.add(name);
        } else if (u.version === undefined) {
          if (u.prev !== undefined) st.known.set(name, u.prev);
          st.unacked.delete(name);
        } else {
          u.rejected = true;
        }
      }
      this.nacked(typeUrl, nonce, response.systemVersion, message, nackedNames(message, sentNames));
      return;
    }
    for (const [name, u] of st.unacked) if (u.seq <= response.seq && !u.rejected) st.unacked.delete(name);
    this.acked(typeUrl, nonce, response.systemVersion, response.changedAt);
  }

  protected subscribes(typeUrl: TypeUrl): boolean {
    return this.types.has(typeUrl);
  }

  protected acknowledged(typeUrl: TypeUrl): boolean {
    const st = this.types.get(typeUrl);
    return st === undefined || (st.inflight.size === 0 && st.unacked.size === 0);
  }

  protected answered(typeUrl: TypeUrl): boolean {
    const st = this.types.get(typeUrl);
    return st === undefined || st.inflight.size === 0;
  }

  protected markChanged(typeUrl: TypeUrl, changed: Changed, changedAt: number): void {
    const st = this.types.get(typeUrl);
    if (!st) return;
    let touches = false;
    if (changed === ALL) {
      st.pendingAll = true;
      touches = true;
    } else {
      for (const name of changed) {
        if (st.wildcard || st.names.has(name)) {
          st.pending.add(name);
          touches = true;
        }
      }
    }
    if (touches && changedAt !== undefined) st.changedAt = st.changedAt === undefined ? changedAt : Math.min(st.changedAt, changedAt);
  }

  /**
   * An updated Cluster warms until its ClusterLoadAssignment comes again, changed or not: its CLA follows in this
   * flush (after CDS), or when the EDS subscription comes, if it has not yet (a reconnect). Publishes mark these in
   * onSnapshot already; this also covers Clusters that changed while the client was away.
   */
  private warmUpdated(clusters: ResourcesByName, updated: readonly string[], changedAt: number | undefined): void {
    const names = endpointNamesOf(clusters, updated);
    if (names.length === 0) return;
    if (this.types.has(TYPE_URL.endpoint)) this.markEndpoints(names, changedAt);
    else for (const name of names) (this.warmOnSubscribe ??= new Set()).add(name);
  }

  protected resendEndpoints(names: readonly string[], changedAt: number | undefined): void {
    this.markEndpoints(names, changedAt);
  }

  /** Marks CLAs to send even at the version the client holds; `changedAt` (none on a reconnect) times the ACK. */
  private markEndpoints(names: readonly string[], changedAt: number | undefined): void {
    const st = this.types.get(TYPE_URL.endpoint);
    if (!st) return;
    let touches = false;
    for (const name of names) {
      if (!st.wildcard && !st.names.has(name)) continue;
      st.pending.add(name);
      st.resend.add(name);
      touches = true;
    }
    if (touches && changedAt !== undefined) st.changedAt = st.changedAt === undefined ? changedAt : Math.min(st.changedAt, changedAt);
  }

  protected hasPending(typeUrl: TypeUrl): boolean {
    const st = this.types.get(typeUrl);
    return st !== undefined && (st.mustRespond || st.pendingAll || st.pending.size > 0);
  }

  private candidates(st: TypeState, typeUrl: TypeUrl): Iterable<string> {
    if (!st.pendingAll) return st.pending;
    const all = new Set<string>(st.pending);
    if (st.wildcard) for (const name of resourcesOf(this.view, typeUrl).keys()) all.add(name);
    for (const name of st.names) all.add(name);
    for (const name of st.known.keys()) all.add(name);
    return all;
  }

  protected flushType(typeUrl: TypeUrl): void {
    const st = this.types.get(typeUrl);
    if (!st) return;
    const map = resourcesOf(this.view, typeUrl);
    const resources: Resource[] = [];
    const carried: VersionedResource[] = [];
    const removed: string[] = [];
    const seq = st.seq + 1;
    let bytes = 0;
    let updated: string[] | undefined;
    let added: string[] | undefined;
    for (const name of this.candidates(st, typeUrl)) {
      if (!st.wildcard && !st.names.has(name)) continue;
      const r = map.get(name);
      const held = st.known.version(name);
      if (r) {
        if (held === r.version && !st.resend.has(name)) continue;
        if (typeUrl === TYPE_URL.cluster) {
          if (held === undefined) (added ??= []).push(name);
          else if (held !== r.version) (updated ??= []).push(name);
        } else if (typeUrl === TYPE_URL.endpoint) this.endpointsSent(name);
        const before = st.unacked.get(name);
        st.unacked.set(name, { version: r.version, acked: before ? before.acked : held, prev: held, seq, rejected: false, retried: st.retry.has(name) });
        st.known.set(name, r);
        resources.push({ name, version: r.version, resource: r.any });
        carried.push(r);
        bytes += r.any.value.length;
      } else if (held !== undefined || st.announceAbsent.has(name)) {
        if (typeUrl === TYPE_URL.endpoint) this.endpointsSent(name);
        removed.push(name);
        st.known.delete(name);
        // A removal of something the client holds waits for its ACK like an update (a NACK puts it back).
        const before = st.unacked.get(name);
        if (held === undefined) st.unacked.delete(name);
        else st.unacked.set(name, { version: undefined, acked: before ? before.acked : held, prev: held, seq, rejected: false, retried: st.retry.has(name) });
      }
    }
    st.known.compact(map, HELD_OVERRIDE_LIMIT);
    const mustRespond = st.mustRespond;
    const changedAt = st.changedAt;
    if (updated && this.only === undefined) this.warmUpdated(map, updated, changedAt);
    // A per-type CDS stream's first response after a resume: the node's EDS streams send these Clusters' CLAs again.
    else if (updated && this.only === TYPE_URL.cluster && seq === 1) this.deps.nodes?.clustersUpdatedOnResume(this, endpointNamesOf(map, updated));
    if (added) this.awaitEndpoints(() => endpointNamesOf(map, added));
    st.pending.clear();
    st.announceAbsent.clear();
    st.resend.clear();
    st.retry.clear();
    st.pendingAll = false;
    st.mustRespond = false;
    st.changedAt = undefined;
    if (resources.length === 0 && removed.length === 0 && !mustRespond) return;
    const nonce = newNonce();
    const systemVersion = String(this.serial);
    st.seq = seq;
    st.inflight.set(nonce, { seq, systemVersion, changedAt });
    if (st.inflight.size > MAX_INFLIGHT) {
      const oldest = st.inflight.keys().next().value;
      if (oldest !== undefined) st.inflight.delete(oldest);
    }
    const response: DeltaDiscoveryResponse = withEncodedResources(
      { system_version_info: systemVersion, resources, type_url: typeUrl, nonce, removed_resources: removed },
      encodeDeltaResources(carried),
    );
    this.sent(typeUrl, response, bytes, nonce, systemVersion);
  }

  protected *resourceStatus(typeUrl: TypeUrl): Iterable<ResourceStatus> {
    const st = this.types.get(typeUrl);
    if (!st) return;
    for (const [name, version] of st.known.entries()) {
      const pending = st.unacked.get(name);
      yield { name, sentVersion: version, ackedVersion: pending ? (pending.acked ?? null) : version };
    }
  }
}
