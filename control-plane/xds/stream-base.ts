// The life of one xDS stream, shared by SotW and delta, ADS or one type: node check, scope, publishes, ordered flushes, ACK/NACK books.
import * as grpc from '@grpc/grpc-js';
import { ADS_ORDER, kindOf, shortName, type Node__Output, TYPE_URL, type TypeUrl, VHDS_FEATURE } from '../../proto/index.ts';
import type { ResourcesByName, ScopeResources, Snapshot, VersionedResource } from '../cache/snapshot.ts';
import { DEFAULT_SLICE_MS } from '../slices.ts';
import { malformedReason } from './bad-requests.ts';
import { type PerTypeSource, perTypeScope, perTypeSourceOf } from './config-sources.ts';
import { tracer, tracing } from './log.ts';
import type { XdsMode } from './metrics.ts';
import { changedBetween } from './shared-state.ts';
import type { PerTypeStream } from './node-streams.ts';
import type { ProxyStatusRecord, ResourceStatus, XdsService } from './status.ts';
import {
  type AdsStream,
  EMPTY_SCOPE,
  errorText,
  Outbox,
  resetHttp2Stream,
  type StreamDeps,
  userAgentOf,
} from './stream-io.ts';

const trace = tracer('xds');
/** Whether `trace` writes (hot paths skip building its fields otherwise). */
const tracingXds = tracing('xds');

/** How much of a NACK's error text a log line carries. */
const MAX_LOGGED_REASON = 2000;

export interface RequestHead {
  readonly node: Node__Output | null;
  readonly type_url: string;
}

/** Every name of the type changed (new scope, or a publish without change lists). */
export const ALL = 'all';
export type Changed = ReadonlySet<string> | typeof ALL;

export abstract class AdsStreamBase<Req extends RequestHead, Res> implements AdsStream, PerTypeStream {
  abstract readonly mode: XdsMode;
  scope: string | undefined;
  /** The one type a per-type stream carries; undefined on ADS. */
  readonly only: TypeUrl | undefined;
  readonly service: XdsService;
  protected node: Node__Output | undefined;
  /**
   * A delta ADS stream whose node declares VHDS_FEATURE (in an envoy scope): it gets the scope's VHDS form (route
   * tables with `vhds`, virtual hosts as VirtualHost resources). Any other stream gets what it always got, and a
   * request of the VirtualHost type is a type Skein does not serve to it.
   */
  protected vhds = false;
  protected record: ProxyStatusRecord | undefined;
  /**
   * The scope's resources as of the last snapshot this stream saw; responses are built from it. While `keeping`,
   * its CDS and EDS maps also hold clusters (and CLAs) that the snapshot removed: see onSnapshot.
   */
  protected view: ScopeResources = EMPTY_SCOPE;
  /** The scope's resources in the last snapshot, as published. */
  private actual: ScopeResources = EMPTY_SCOPE;
  /** The view keeps removed clusters until the proxy has ACKed the listeners and routes sent since (make-before-break). */
  private keeping = false;
  private lastChangedAt = 0;
  /** A per-type CDS or LDS stream: where the EDS/RDS config sources in what it sends point (config-sources.ts). */
  private perTypeSource: PerTypeSource | undefined;
  /** A per-type EDS stream: CLAs of changed Clusters to re-send once the node's CDS streams are settled. */
  private heldResends: { readonly names: readonly string[]; readonly changedAt: number | undefined }[] | undefined;
  protected serial = 0;
  protected readonly deps: StreamDeps;
  protected readonly outbox: Outbox<Res>;
  private readonly call: grpc.ServerDuplexStream<Req, Res>;
  private closed = false;
  private flushScheduled = false;
  /**
   * CLA names of EDS Clusters this ADS stream has just sent the client for the first time. Such a Cluster warms until
   * its ClusterLoadAssignment comes, and a route naming it meanwhile fails ("routes are not warmed": the protocol
   * asks the server to have clusters and their endpoints in place first), so listeners and routes wait until these
   * CLAs went out, for at most AWAIT_ENDPOINTS_MS (a client that never subscribes to them).
   */
  private awaiting: Map<string, number> | undefined;
  private clustersSent = false;
  private awaitTimer: NodeJS.Timeout | undefined;

  constructor(call: grpc.ServerDuplexStream<Req, Res>, deps: StreamDeps, only?: TypeUrl) {
    this.call = call;
    this.deps = deps;
    this.only = only;
    this.service = only === undefined ? 'ADS' : (shortName(only) as XdsService);
    this.outbox = new Outbox<Res>(
      call,
      deps.limits,
      () => this.scheduleFlush(),
      () =>
        this.terminate(
          grpc.status.RESOURCE_EXHAUSTED,
          `proxy did not read xDS responses for ${deps.limits.backlogLimitMs} ms; closing the stream`,
          true,
        ),
    );
    call.on('data', (req: Req) => this.guard(() => this.onRequest(req)));
    call.on('end', () => {
      this.cleanup();
      call.end();
    });
    call.on('cancelled', () => this.cleanup());
  }

  /** Applies a request of a known type to the per-type state (subscriptions, ACK/NACK). */
  protected abstract handleRequest(req: Req, typeUrl: TypeUrl): void;
  /** Records that names of a type changed in the scope, at snapshot.changedAt. */
  protected abstract markChanged(typeUrl: TypeUrl, changed: Changed, changedAt: number): void;
  /**
   * Clusters changed: their ClusterLoadAssignments (`names`) must be sent again even if unchanged, as Envoy finishes
   * warming an updated Cluster only on a new CLA response. Only names the stream subscribes to count (see warmsClusters).
   */
  protected abstract resendEndpoints(names: readonly string[], changedAt: number | undefined): void;
  protected abstract hasPending(typeUrl: TypeUrl): boolean;
  /** Whether the stream has a subscription of the type. */
  protected abstract subscribes(typeUrl: TypeUrl): boolean;
  /** Whether every response sent of the type has been ACKed (a NACK leaves the client on an older one: false). */
  protected abstract acknowledged(typeUrl: TypeUrl): boolean;
  /** Whether every response sent of the type has been answered, by an ACK or a NACK. */
  protected abstract answered(typeUrl: TypeUrl): boolean;
  /** Builds and writes the response for a type with pending work. */
  protected abstract flushType(typeUrl: TypeUrl): void;
  protected abstract resourceStatus(typeUrl: TypeUrl): Iterable<ResourceStatus>;

  get nodeId(): string {
    return this.node?.id ?? '';
  }

  /**
   * A request this stream cannot read: logged once (peer, node id if known, reason), counted in
   * skein_xds_rejected_requests_total, and the stream ends (other streams are not affected). A malformed message, or
   * a first request without node.id, or a per-type stream's request for another type, ends it with INVALID_ARGUMENT; an oversized one has had RESOURCE_EXHAUSTED sent by grpc-js (`statusSent`).
   */
  rejectRequest(kind: 'malformed' | 'too_large' | 'no_node' | 'wrong_type', reason: string, statusSent: boolean): void {
    if (this.closed) return;
    const code = kind === 'too_large' ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.INVALID_ARGUMENT;
    let peer = '(unknown)';
    try {
      peer = this.call.getPeer();
    } catch {
      // the call is already gone: keep the placeholder
    }
    this.deps.log.warn('xDS request rejected; closing the stream', { peer, nodeId: this.nodeId || '(not sent yet)', code: grpc.status[code], reason });
    this.deps.metrics.rejectedRequests.inc({ reason: kind });
    if (statusSent) this.cleanup();
    else this.terminate(code, reason, false, true);
  }

  private onRequest(req: Req): void {
    if (this.closed) return;
    const malformed = malformedReason(req);
    if (malformed !== undefined) {
      this.rejectRequest('malformed', `malformed request: ${malformed}`, false);
      return;
    }
    if (!this.node) {
      if (!req.node?.id) {
        this.rejectRequest('no_node', 'first request must carry node.id', false);
        return;
      }
      this.start(req.node);
    }
    let typeUrl = req.type_url;
    if (this.only !== undefined && typeUrl !== this.only) {
      // The type is implicit on a per-type service (the xDS protocol: type_url "is implicit in requests made via
      // singleton xDS APIs such as CDS, LDS"): empty means the service's type; another type is the client's mistake.
      if (typeUrl !== '') {
        this.rejectRequest('wrong_type', `the ${this.service} service carries ${this.only} only; the request asked for ${typeUrl} (use ADS, or that type's own service)`, false);
        return;
      }
      typeUrl = this.only;
    }
    if (!kindOf(typeUrl) || (typeUrl === TYPE_URL.virtualHost && !this.vhds)) {
      if (!this.record?.unknownTypeUrls.has(typeUrl)) {
        this.deps.log.warn('request for a type Skein does not serve; answering nothing', {
          nodeId: this.nodeId,
          typeUrl,
        });
      }
      this.record?.unknownType(typeUrl);
      return;
    }
    this.handleRequest(req, typeUrl as TypeUrl);
    // A request only changes its own type's state; a plain ACK leaves nothing to send (types blocked by backpressure
    // are flushed when the outbox becomes writable again).
    if (this.hasPending(typeUrl as TypeUrl)) this.scheduleFlush();
    else if (this.only === TYPE_URL.cluster) this.announceClustersSettled();
    if (this.keeping && ROUTING_TYPES.includes(typeUrl as TypeUrl) && this.routesSettled()) this.dropKept();
  }

  private start(node: Node__Output): void {
    this.node = node;
    if (this.only === TYPE_URL.cluster || this.only === TYPE_URL.listener) {
      this.perTypeSource = perTypeSourceOf(node, this.mode === 'delta' ? 'DELTA_GRPC' : 'GRPC');
    }
    const scope = this.deps.cache.scopeOf(node);
    // scopeOf may publish (a scope built on first use): read the snapshot after it.
    const snapshot = this.deps.cache.current();
    this.scope = scope;
    this.serial = snapshot.serial;
    this.vhds = this.mode === 'delta' && this.only === undefined && declaresVhds(node) && snapshot.vhdsScopes?.has(scope) === true;
    this.view = this.adapt(this.scopeIn(snapshot, scope));
    this.actual = this.view;
    this.record = this.deps.status.open({
      nodeId: node.id,
      scope,
      userAgent: userAgentOf(node),
      mode: this.mode,
      service: this.service,
      peer: this.call.getPeer(),
      certNotAfter: metadataString(node, 'CERT_NOT_AFTER'),
    });
    this.record.setResourceView((typeUrl) => this.resourceStatus(typeUrl));
    this.deps.register(this);
    trace('stream started', { nodeId: node.id, scope, mode: this.mode, service: this.service });
  }

  onSnapshot(snapshot: Snapshot): void {
    this.guard(() => {
      if (this.closed || this.scope === undefined) return;
      this.serial = snapshot.serial;
      this.lastChangedAt = snapshot.changedAt;
      const actual = this.adapt(this.scopeIn(snapshot, this.scope));
      const prev = this.view;
      if (actual === this.actual) return;
      const changes = snapshot.changes.get(this.scope);
      const wasKeeping = this.keeping;
      this.actual = actual;
      // Listeners and routes follow the snapshot; they are marked first, as whether clusters are kept depends on them.
      for (const typeUrl of ROUTING_TYPES) {
        if (this.subscribes(typeUrl) && prev.get(typeUrl) !== actual.get(typeUrl)) {
          this.markChanged(typeUrl, changes?.get(typeUrl) ?? ALL, snapshot.changedAt);
        }
      }
      // Make-before-break: when a publish replaces clusters (adds some and removes others: a port renamed, a route
      // moved to another Service's cluster), or removes one that a virtual host staying in the proxy's routes still
      // names (a canary Service deleted, the weighted route to it dropped in the same publish), the removed ones stay
      // (with their CLAs) while the listeners and routes sent to the proxy since, which stop using them, are not all
      // ACKed (a route still naming a removed cluster would fail its requests meanwhile). A publish that only removes
      // clusters whose virtual hosts go too (a Service deleted) drops them at once, as does a proxy without listeners
      // or routes to wait for. A per-type CDS stream never sees LDS/RDS ACKs (they come on other streams, which may
      // not even be ours): it keeps nothing.
      let next = actual;
      if (
        this.subscribes(TYPE_URL.cluster) &&
        !this.routesSettled() &&
        (wasKeeping || addsClusters(prev, actual, changes) || removesRoutedCluster(prev, actual, changes))
      ) {
        const clusters = withRemoved(prev.get(TYPE_URL.cluster), actual.get(TYPE_URL.cluster));
        const endpoints = withRemoved(prev.get(TYPE_URL.endpoint), actual.get(TYPE_URL.endpoint));
        if (clusters !== actual.get(TYPE_URL.cluster) || endpoints !== actual.get(TYPE_URL.endpoint)) {
          const kept = new Map(actual);
          if (clusters) kept.set(TYPE_URL.cluster, clusters);
          if (endpoints) kept.set(TYPE_URL.endpoint, endpoints);
          next = kept;
        }
      }
      this.keeping = next !== actual;
      this.view = next;
      // Against the snapshot's change lists unless the view kept something, before or now (then against the view).
      const exact = !wasKeeping && !this.keeping;
      for (const typeUrl of [TYPE_URL.cluster, TYPE_URL.endpoint]) {
        if (!this.subscribes(typeUrl) || prev.get(typeUrl) === next.get(typeUrl)) continue;
        this.markChanged(typeUrl, exact ? (changes?.get(typeUrl) ?? ALL) : namesChanged(prev.get(typeUrl), next.get(typeUrl)), snapshot.changedAt);
      }
      const prevClusters = prev.get(TYPE_URL.cluster);
      const nextClusters = next.get(TYPE_URL.cluster);
      if (prevClusters !== nextClusters && nextClusters !== undefined && this.warmsClusters()) {
        const changed = (exact ? changes?.get(TYPE_URL.cluster) : undefined) ?? changedBetween(prevClusters ?? EMPTY_MAP, nextClusters);
        const names = endpointNamesOf(nextClusters, changed);
        if (names.length > 0) this.resendOrHold(names, snapshot.changedAt);
      }
      this.scheduleFlush();
    });
  }

  /** The scope in a snapshot: its VHDS form for a VHDS stream (see `vhds`), else as published. */
  private scopeIn(snapshot: Snapshot, scope: string): ScopeResources {
    return (this.vhds ? snapshot.vhdsScopes?.get(scope) : undefined) ?? snapshot.scopes.get(scope) ?? EMPTY_SCOPE;
  }

  /**
   * The scope's resources as this stream sends them: as published, except on a per-type CDS or LDS stream, where
   * EDS and RDS config sources say where an Envoy without ADS gets them (the same object for the same scope).
   */
  private adapt(resources: ScopeResources): ScopeResources {
    return this.perTypeSource === undefined ? resources : perTypeScope(resources, this.only as TypeUrl, this.perTypeSource);
  }

  /**
   * Whether a changed Cluster's ClusterLoadAssignment must be sent again on this stream: an ADS stream with both CDS
   * and EDS, or a per-type EDS stream (the proxy's CDS comes on another stream; see resendOrHold for when).
   */
  private warmsClusters(): boolean {
    return this.only === undefined ? this.subscribes(TYPE_URL.cluster) && this.subscribes(TYPE_URL.endpoint) : this.only === TYPE_URL.endpoint;
  }

  /**
   * On ADS the CLAs go in this publish's flush, after CDS. A per-type EDS stream holds them back while the node has
   * a CDS stream here that has not yet sent and had answered the Clusters that changed (node-streams.ts): a CLA that
   * reached Envoy before its updated Cluster would leave that Cluster warming. Publishes reach per-type CDS streams
   * before EDS ones (server.ts), so the CDS stream already knows it has something to send.
   */
  protected resendOrHold(names: readonly string[], changedAt: number | undefined): void {
    const nodes = this.deps.nodes;
    if (this.only === TYPE_URL.endpoint && nodes && !nodes.clustersSettled(this)) {
      (this.heldResends ??= []).push({ names, changedAt });
      return;
    }
    this.resendEndpoints(names, changedAt);
  }

  /** PerTypeStream: the node's CDS streams are settled; re-sends the held CLAs. */
  releaseEndpoints(): void {
    this.guard(() => {
      const held = this.heldResends;
      if (!held || this.closed) return;
      this.heldResends = undefined;
      for (const { names, changedAt } of held) this.resendEndpoints(names, changedAt);
      if (this.hasPending(TYPE_URL.endpoint)) this.scheduleFlush();
    });
  }

  /** PerTypeStream (an EDS stream): the node's CDS stream resumed with these CLAs' Clusters updated (see NodeStreams). */
  warmEndpoints(names: readonly string[]): void {
    this.guard(() => {
      if (this.closed) return;
      this.resendOrHold(names, undefined);
      if (this.hasPending(TYPE_URL.endpoint)) this.scheduleFlush();
    });
  }

  /** PerTypeStream (a CDS stream): nothing to send, and every response sent was ACKed or NACKed. */
  clustersSettled(): boolean {
    return !this.hasPending(TYPE_URL.cluster) && this.answered(TYPE_URL.cluster);
  }

  /** A per-type CDS stream that may have just settled: the node's EDS streams may go on. */
  private announceClustersSettled(): void {
    if (this.deps.nodes && this.clustersSettled()) this.deps.nodes.clustersAnswered(this.nodeId, this.scope);
  }

  /** Every listener, route table and virtual host sent has been ACKed and none is waiting to be sent. */
  private routesSettled(): boolean {
    for (const typeUrl of ROUTING_TYPES) {
      if (this.subscribes(typeUrl) && (this.hasPending(typeUrl) || !this.acknowledged(typeUrl))) return false;
    }
    return true;
  }

  /** The proxy's listeners and routes no longer name the kept clusters: they go (CDS, and their CLAs for delta). */
  private dropKept(): void {
    const prev = this.view;
    this.keeping = false;
    this.view = this.actual;
    for (const typeUrl of [TYPE_URL.cluster, TYPE_URL.endpoint]) {
      if (!this.subscribes(typeUrl) || prev.get(typeUrl) === this.view.get(typeUrl)) continue;
      this.markChanged(typeUrl, namesChanged(prev.get(typeUrl), this.view.get(typeUrl)), this.lastChangedAt);
    }
    this.scheduleFlush();
  }

  protected scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    flushLater(this);
  }

  /** Runs the flush scheduleFlush asked for (called from the shared flush queue). */
  runScheduledFlush(): void {
    this.flushScheduled = false;
    this.guard(() => this.flush());
  }

  /**
   * CDS flush: the ClusterLoadAssignments of Clusters sent to this client for the first time (see `awaiting`). Not
   * for the stream's first Clusters (at start-up Envoy asks for listeners only once its clusters are warm), nor on a
   * stream that takes no endpoints (nothing there warms).
   */
  protected awaitEndpoints(names: () => readonly string[]): void {
    const first = !this.clustersSent;
    this.clustersSent = true;
    if (first || this.only !== undefined || !this.subscribes(TYPE_URL.endpoint)) return;
    const list = names();
    if (list.length === 0) return;
    // Each name waits AWAIT_ENDPOINTS_MS from when its Cluster was sent, not more: a CLA the client never asks for
    // holds nothing for longer, however many Clusters follow.
    const now = performance.now();
    const until = now + AWAIT_ENDPOINTS_MS;
    const map = (this.awaiting ??= new Map());
    for (const name of list) {
      const at = map.get(name);
      if (at === undefined || at <= now) map.set(name, until); // a name sent again after its wait ended waits anew
    }
    if (this.awaitTimer === undefined) this.armAwaitTimer();
  }

  /** A flush when the earliest wait ends (it then lets the routes go if nothing else is awaited). */
  private armAwaitTimer(): void {
    const awaiting = this.awaiting;
    if (awaiting === undefined || awaiting.size === 0) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const until of awaiting.values()) if (until < earliest) earliest = until;
    this.awaitTimer = setTimeout(() => {
      this.awaitTimer = undefined;
      this.scheduleFlush();
    }, Math.max(1, earliest - performance.now() + 1));
    this.awaitTimer.unref();
  }

  /** EDS flush: a ClusterLoadAssignment went out (or was answered as absent). */
  protected endpointsSent(name: string): void {
    this.awaiting?.delete(name);
  }

  /** Whether listeners and routes wait for the CLAs of new Clusters (see `awaiting`); drops waits that ended. */
  private holdsRoutes(): boolean {
    const awaiting = this.awaiting;
    if (awaiting === undefined) return false;
    const now = performance.now();
    for (const [name, until] of awaiting) if (until <= now) awaiting.delete(name);
    if (awaiting.size > 0) {
      if (this.awaitTimer === undefined) this.armAwaitTimer();
      return true;
    }
    this.awaiting = undefined;
    clearTimeout(this.awaitTimer);
    this.awaitTimer = undefined;
    return false;
  }

  /** Sends every type with pending work in ADS order (CDS, EDS, LDS, RDS); stops while the client is not reading. */
  private flush(): void {
    for (const typeUrl of ADS_ORDER) {
      if (this.closed || !this.outbox.writable) return;
      if (!this.hasPending(typeUrl)) continue;
      if (ROUTING_TYPES.includes(typeUrl) && this.holdsRoutes()) continue;
      // Past the turn's slice (a large publish: each response can take tens of ms), the remaining types go out in
      // a later turn, still in ADS order. runDue starts a stream only before the deadline, so each turn sends one.
      if (performance.now() >= flushDeadline) {
        this.scheduleFlush();
        return;
      }
      this.flushType(typeUrl);
      // A flush that sent nothing (the client holds this version) settles a per-type CDS stream at once.
      if (this.only === TYPE_URL.cluster) this.announceClustersSettled();
    }
  }

  protected sent(typeUrl: TypeUrl, response: Res, bytes: number, nonce: string, version: string): void {
    this.outbox.write(response, bytes);
    const type = shortName(typeUrl);
    this.deps.metrics.countSent(type, this.mode, bytes);
    this.record?.sent(typeUrl, nonce, version);
    if (tracingXds) trace('sent', { nodeId: this.nodeId, type, nonce, version, bytes });
  }

  protected acked(typeUrl: TypeUrl, nonce: string, version: string, changedAt: number | undefined): void {
    this.record?.acked(typeUrl, nonce, version);
    if (changedAt !== undefined) {
      this.deps.metrics.convergence.observe(Math.max(0, performance.now() - changedAt) / 1000);
    }
    if (tracingXds) trace('ack', { nodeId: this.nodeId, type: shortName(typeUrl), nonce, version });
  }

  protected nacked(typeUrl: TypeUrl, nonce: string, version: string, message: string, names: string[]): void {
    const type = shortName(typeUrl);
    this.deps.metrics.nacks.inc({ type });
    this.record?.nacked(typeUrl, { version, nonce, message, resourceNames: names });
    // The whole text stays in proxy-status and /debug; a log line carries its first 2000 characters (a proxy's
    // error_detail can be 100 KB) and at most 20 resource names.
    this.deps.log.warn('proxy rejected xDS response (NACK)', {
      nodeId: this.nodeId,
      type,
      version,
      nonce,
      reason: message.length > MAX_LOGGED_REASON ? `${message.slice(0, MAX_LOGGED_REASON)}... (${message.length} characters; the whole text: skein proxy-status)` : message,
      resources: names.length > 20 ? [...names.slice(0, 20), `... ${names.length - 20} more`] : names,
    });
  }

  /** Ends the stream with a status; `reset` also resets the HTTP/2 stream (for a client that stopped reading). */
  terminate(code: grpc.status, details: string, reset = false, quiet = false): void {
    if (this.closed) return;
    const fields = { nodeId: this.nodeId || '(none)', scope: this.scope, code: grpc.status[code], reason: details };
    if (quiet) trace('xDS stream closed', fields);
    else this.deps.log[code === grpc.status.UNAVAILABLE ? 'warn' : 'error']('xDS stream closed', fields);
    this.cleanup();
    this.call.emit('error', { code, details });
    if (reset) resetHttp2Stream(this.call);
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.awaitTimer);
    this.outbox.close();
    if (this.node) {
      this.deps.unregister(this);
      // An EDS stream of the node may be waiting for this CDS stream: it waits no more.
      if (this.only === TYPE_URL.cluster) this.deps.nodes?.clustersAnswered(this.nodeId, this.scope);
      if (this.scope !== undefined) this.deps.cache.releaseScope?.(this.scope);
      this.record?.close();
      trace('stream ended', { nodeId: this.nodeId });
    }
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.terminate(grpc.status.INTERNAL, `xDS stream failed: ${errorText(err)}`);
    }
  }
}

const EMPTY_MAP: ResourcesByName = new Map();

/** The types that say which clusters requests use (make-before-break waits for their ACKs); VHDS carries routes too. */
const ROUTING_TYPES: readonly TypeUrl[] = [TYPE_URL.listener, TYPE_URL.route, TYPE_URL.virtualHost];
/** How long listeners and routes wait for the CLAs of new Clusters before they go anyway (see `awaiting`). */
export const AWAIT_ENDPOINTS_MS = 2000;

/** Whether a node asks for VHDS (node.client_features holds VHDS_FEATURE). */
export function declaresVhds(node: Pick<Node__Output, 'client_features'> | null | undefined): boolean {
  return Array.isArray(node?.client_features) && node.client_features.includes(VHDS_FEATURE);
}

/** Per map a view held: the last map it moved to and the result, shared by every stream of the scope. */
const keptCache = new WeakMap<ResourcesByName, { readonly next: ResourcesByName; readonly out: ResourcesByName }>();

/** `next` plus the entries of `prev` it lacks (`next` itself when it lacks none); computed once per pair of maps. */
function withRemoved(prev: ResourcesByName | undefined, next: ResourcesByName | undefined): ResourcesByName | undefined {
  if (!prev || !next || prev === next) return next;
  const hit = keptCache.get(prev);
  if (hit?.next === next) return hit.out;
  let out: Map<string, VersionedResource> | undefined;
  for (const [name, r] of prev) {
    if (next.has(name)) continue;
    out ??= new Map(next);
    out.set(name, r);
  }
  const result = out ?? next;
  keptCache.set(prev, { next, out: result });
  return result;
}

/** Whether the publish adds a cluster the view did not have (judged from its change list; none for a new scope). */
function addsClusters(prev: ScopeResources, actual: ScopeResources, changes: ReadonlyMap<TypeUrl, ReadonlySet<string>> | undefined): boolean {
  const changed = changes?.get(TYPE_URL.cluster);
  const before = prev.get(TYPE_URL.cluster);
  const after = actual.get(TYPE_URL.cluster);
  if (!changed || !before || !after || before === after) return false;
  for (const name of changed) if (after.has(name) && !before.has(name)) return true;
  return false;
}

/** Per scope view moved to: the view it came from and whether that removes a routed cluster (shared by a scope's streams). */
const routedRemovals = new WeakMap<ScopeResources, { readonly prev: ScopeResources; readonly result: boolean }>();

interface RoutesOf {
  readonly routes?: readonly { readonly route?: { readonly cluster?: string; readonly weighted_clusters?: { readonly clusters?: readonly { readonly name?: string }[] } } }[];
}
interface HostOf extends RoutesOf {
  readonly name?: string;
}

/**
 * Whether the publish removes a cluster that a virtual host the proxy keeps (in a route table or as a VHDS
 * resource, changed by the same publish) named before it: that host must be ACKed in its new form before the
 * cluster goes. Computed once per pair of cluster map and snapshot scope, whatever the number of streams.
 */
function removesRoutedCluster(prev: ScopeResources, actual: ScopeResources, changes: ReadonlyMap<TypeUrl, ReadonlySet<string>> | undefined): boolean {
  const before = prev.get(TYPE_URL.cluster);
  const after = actual.get(TYPE_URL.cluster);
  if (!before || !after || before === after) return false;
  const hit = routedRemovals.get(actual);
  if (hit?.prev === prev) return hit.result;
  let removed: Set<string> | undefined;
  // The publish's change list names what it removed; without one (a view that kept clusters), compare the maps.
  const changed = changes?.get(TYPE_URL.cluster);
  for (const name of changed ?? before.keys()) if (before.has(name) && !after.has(name)) (removed ??= new Set()).add(name);
  const names = (host: HostOf): boolean =>
    (host.routes ?? []).some((r) => (r.route?.cluster !== undefined && removed!.has(r.route.cluster)) || (r.route?.weighted_clusters?.clusters ?? []).some((w) => w.name !== undefined && removed!.has(w.name)));
  let result = false;
  if (removed) {
    for (const typeUrl of [TYPE_URL.route, TYPE_URL.virtualHost]) {
      const was = prev.get(typeUrl);
      const now = actual.get(typeUrl);
      if (!was || !now || was === now) continue;
      for (const [name, r] of was) {
        const next = now.get(name);
        if (!next || next === r) continue;
        if (typeUrl === TYPE_URL.virtualHost) result = names(r.message as HostOf);
        else {
          const staying = new Set(((next.message as { virtual_hosts?: readonly HostOf[] }).virtual_hosts ?? []).map((h) => h.name));
          result = ((r.message as { virtual_hosts?: readonly HostOf[] }).virtual_hosts ?? []).some((h) => staying.has(h.name) && names(h));
        }
        if (result) break;
      }
      if (result) break;
    }
  }
  routedRemovals.set(actual, { prev, result });
  return result;
}

const changeSets = new WeakMap<readonly string[], ReadonlySet<string>>();

/** The names whose resource differs between two maps of a view, as a change list (shared per pair of maps). */
function namesChanged(prev: ResourcesByName | undefined, next: ResourcesByName | undefined): ReadonlySet<string> {
  const names = changedBetween(prev ?? EMPTY_MAP, next ?? EMPTY_MAP);
  let set = changeSets.get(names);
  if (!set) changeSets.set(names, (set = new Set(names)));
  return set;
}

/** Per change list (shared by every stream of a scope, and by scopes): the CLA names of its EDS clusters. */
const endpointNamesCache = new WeakMap<object, { readonly clusters: ResourcesByName; readonly names: readonly string[] }>();

/**
 * The ClusterLoadAssignment names (eds_cluster_config.service_name, else the cluster's name) of the EDS clusters
 * among `changed` that `clusters` still has. Computed once per change list and map, whatever the number of streams.
 */
export function endpointNamesOf(clusters: ResourcesByName, changed: Iterable<string> & object): readonly string[] {
  const hit = endpointNamesCache.get(changed);
  if (hit?.clusters === clusters) return hit.names;
  const names: string[] = [];
  for (const name of changed) {
    const c = clusters.get(name)?.message as { type?: string; eds_cluster_config?: { service_name?: string } } | undefined;
    if (c?.type === 'EDS') names.push(c.eds_cluster_config?.service_name || name);
  }
  endpointNamesCache.set(changed, { clusters, names });
  return names;
}

/**
 * Streams with a flush due, run in one setImmediate per event-loop turn for all of them rather than one per stream:
 * a publish reaches every stream of a scope at once (1000 Immediates, each followed by Node's tick processing, were
 * a visible part of a change's cost). Streams flush in the order they asked, as they did with one Immediate each.
 */
let due: AdsStreamBase<RequestHead, unknown>[] = [];
let dueScheduled = false;
/** When the running batch's slice ends (performance.now()); no limit outside runDue. */
let flushDeadline = Number.POSITIVE_INFINITY;

function flushLater(stream: AdsStreamBase<RequestHead, unknown>): void {
  due.push(stream);
  if (dueScheduled) return;
  dueScheduled = true;
  setImmediate(runDue);
}

function runDue(): void {
  dueScheduled = false;
  const batch = due;
  due = [];
  // A stream scheduling again while its batch runs (it was not in it yet, or is again) lands in the next turn's batch.
  // A batch that runs past one slice (a large publish to many streams) leaves the rest for the next turn, ahead of
  // later arrivals, so timers, the admin server and keepalives are not starved meanwhile.
  const deadline = performance.now() + DEFAULT_SLICE_MS;
  flushDeadline = deadline;
  try {
    for (let i = 0; i < batch.length; i++) {
      (batch[i] as AdsStreamBase<RequestHead, unknown>).runScheduledFlush();
      if (i + 1 < batch.length && performance.now() >= deadline) {
        due = [...batch.slice(i + 1), ...due];
        if (!dueScheduled) {
          dueScheduled = true;
          setImmediate(runDue);
        }
        return;
      }
    }
  } finally {
    flushDeadline = Number.POSITIVE_INFINITY;
  }
}

/** Sum of the encoded resource bytes of a response. */
export function payloadBytes(anys: Iterable<{ value: Uint8Array }>): number {
  let n = 0;
  for (const a of anys) n += a.value.length;
  return n;
}

/** A string field of the node's metadata (either JSON field-name form), or undefined. */
function metadataString(node: { metadata?: unknown } | null | undefined, name: string): string | undefined {
  const fields = (node?.metadata as { fields?: Record<string, { stringValue?: string; string_value?: string }> } | null | undefined)?.fields;
  const f = fields?.[name];
  return f?.stringValue ?? f?.string_value ?? undefined;
}
