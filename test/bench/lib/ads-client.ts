// A simulated sidecar on ADS (state of the world or delta, optionally with VHDS): subscribes like Skein's sidecar, ACKs everything, counts bytes.
import * as grpc from '@grpc/grpc-js';
import {
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse__Output,
  type DiscoveryRequest,
  type DiscoveryResponse__Output,
  EXTENSION_TYPE_URL,
  TYPE_URL,
  type Cluster__Output,
  type HttpConnectionManager__Output,
  type Listener__Output,
  type Node,
  decodeMessage,
  grpcDefinitions,
  VHDS_FEATURE,
} from '../../../proto/index.ts';
import { type ChangeTracker, type Expectation, monotonicMs } from './change-tracker.ts';
import { H2Call } from './h2-call.ts';

export type XdsMode = 'sotw' | 'delta';
/** How a simulated proxy speaks gRPC: a bare HTTP/2 stream (default, see h2-call.ts) or grpc-js's client. */
export type ClientKind = 'h2' | 'grpc-js';

export interface ProxyCounters {
  /** Serialized response bytes received, all types. */
  bytes: number;
  responses: number;
  edsBytes: number;
  edsResponses: number;
  /** Serialized request bytes sent (subscriptions, ACKs, NACKs), gRPC's 5-byte message prefix included. */
  requestBytes: number;
  /** Responses or requests that failed (stream errors, NACK-worthy payloads). */
  errors: number;
}

export function newCounters(): ProxyCounters {
  return { bytes: 0, responses: 0, edsBytes: 0, edsResponses: 0, requestBytes: 0, errors: 0 };
}

export interface SimulatedProxyOptions {
  readonly address: string;
  readonly mode: XdsMode;
  /** This proxy's index in the worker (its slot in the tracker). */
  readonly slot: number;
  /** Globally unique index (node id). */
  readonly index: number;
  readonly namespace: string;
  readonly tracker: ChangeTracker;
  /** Shared by the worker's proxies. */
  readonly counters: ProxyCounters;
  /** Called once, when CDS, EDS (every subscribed cluster), LDS and RDS (and VHDS) have all been received and ACKed. */
  readonly onSynced: (slot: number) => void;
  readonly onError: (slot: number, message: string) => void;
  /** Default 'h2'. */
  readonly client?: ClientKind;
  /**
   * Delta only (default true): declare VHDS (node.client_features) and, once the route table has come, subscribe to
   * every VirtualHost, as Skein's sidecar does; synced then also waits for the VirtualHosts. false: RDS only.
   */
  readonly vhds?: boolean;
}

/** The part of a bidi call the simulated proxy uses (grpc-js's ClientDuplexStream and H2Call both have it). */
interface AdsCall {
  write(message: object): unknown;
  cancel(): void;
  on(event: 'data', listener: (message: object) => void): unknown;
  on(event: 'error', listener: (err: grpc.ServiceError) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
}

type AdsMethod = grpc.MethodDefinition<object, object>;

function adsMethods(): { sotw: AdsMethod; delta: AdsMethod } {
  const service = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service;
  return {
    sotw: service.StreamAggregatedResources as unknown as AdsMethod,
    delta: service.DeltaAggregatedResources as unknown as AdsMethod,
  };
}

/** The ClusterLoadAssignment's cluster_name (field 1) read straight from its bytes; undefined if not first. */
export function claNameOf(bytes: Uint8Array): string | undefined {
  if (bytes[0] !== 0x0a) return undefined;
  let len = 0;
  let shift = 0;
  let i = 1;
  for (; i < 6; i++) {
    const b = bytes[i] as number;
    len |= (b & 0x7f) << shift;
    shift += 7;
    if (b < 0x80) break;
  }
  const start = i + 1;
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, len).toString('utf8');
}

function claName(bytes: Uint8Array): string {
  return claNameOf(bytes) ?? decodeMessage<{ cluster_name: string }>(TYPE_URL.endpoint, bytes).cluster_name;
}

/**
 * What one resource asks for next (a Cluster: its EDS name; a Listener: the route tables its HCMs name), remembered
 * per resource name with the bytes it came from: the proxies of one worker receive the same resources, and decoding
 * each of them once per proxy would make the load generator, not the control plane, the bottleneck. A hit costs one
 * byte compare (Cluster.name and Listener.name are both field 1).
 */
class DerivedNames {
  private readonly byName = new Map<string, { bytes: Uint8Array; names: readonly string[] }>();
  private readonly derive: (bytes: Uint8Array) => readonly string[];

  constructor(derive: (bytes: Uint8Array) => readonly string[]) {
    this.derive = derive;
  }

  of(bytes: Uint8Array): readonly string[] {
    const name = claNameOf(bytes);
    const hit = name === undefined ? undefined : this.byName.get(name);
    if (hit && Buffer.compare(hit.bytes, bytes) === 0) return hit.names;
    const names = this.derive(bytes);
    // A copy: `bytes` may sit in the buffer H2Call reuses for the next large message.
    if (name !== undefined) this.byName.set(name, { bytes: Buffer.from(bytes), names });
    return names;
  }
}

const EDS_OF_CLUSTER = new DerivedNames((bytes) => {
  const c = decodeMessage<Cluster__Output>(TYPE_URL.cluster, bytes);
  return c.type === 'EDS' ? [c.eds_cluster_config?.service_name || c.name] : [];
});

const ROUTES_OF_LISTENER = new DerivedNames((bytes) => {
  const names = new Set<string>();
  const fromHcm = (any: { type_url: string; value: Uint8Array } | null | undefined) => {
    if (!any || any.type_url !== EXTENSION_TYPE_URL.httpConnectionManager) return;
    const hcm = decodeMessage<HttpConnectionManager__Output>(any.type_url, any.value);
    if (hcm.rds?.route_config_name) names.add(hcm.rds.route_config_name);
  };
  const l = decodeMessage<Listener__Output>(TYPE_URL.listener, bytes);
  fromHcm(l.api_listener?.api_listener);
  for (const chain of l.filter_chains ?? []) for (const f of chain.filters ?? []) fromHcm(f.typed_config);
  return [...names];
});

/** The array form of a subscription set, made once per set (a SotW proxy repeats it in every ACK). */
const arrays = new WeakMap<ReadonlySet<string>, string[]>();
function namesArray(names: ReadonlySet<string>): string[] {
  let a = arrays.get(names);
  if (a === undefined) arrays.set(names, (a = [...names]));
  return a;
}

/**
 * A request serializer that encodes a long `resource_names` list once per list and sends those bytes with each
 * request. A SotW proxy repeats its whole subscription (1000+ names) in every ACK: Envoy encodes that in C++ in
 * microseconds, but protobufjs takes ~180 µs, and 1000 simulated proxies on one core would queue ~180 ms behind
 * each other inside the measured ACK time. The bytes decode to the same request (protobuf fields may come in any
 * order; repeated ones append). Returns the message as parts: the small per-request head, then the shared names
 * bytes (never copied: H2Call writes the parts as they are, see cachedNamesParts).
 */
const encodedNames = new WeakMap<readonly string[], Buffer>();
export function cachedNamesParts(original: (value: object) => Buffer): (value: object) => readonly Buffer[] {
  return (value) => {
    const names = (value as { resource_names?: readonly string[] }).resource_names;
    if (names === undefined || names.length < 100) return [original(value)];
    let encoded = encodedNames.get(names);
    if (encoded === undefined) encodedNames.set(names, (encoded = original({ resource_names: names })));
    return [original({ ...value, resource_names: [] }), encoded];
  };
}

/** cachedNamesParts joined into one buffer, for grpc-js's client (its serializer must return one Buffer). */
export function withCachedNames(original: (value: object) => Buffer): (value: object) => Buffer {
  return joinParts(cachedNamesParts(original));
}

function joinParts(parts: (value: object) => readonly Buffer[]): (value: object) => Buffer {
  return (value) => {
    const p = parts(value);
    return p.length === 1 ? (p[0] as Buffer) : Buffer.concat(p);
  };
}

/** Every name a state-of-the-world set of resources asks for. */
function namesOfAll(derived: DerivedNames, resources: Iterable<Uint8Array>): Set<string> {
  const names = new Set<string>();
  for (const bytes of resources) for (const name of derived.of(bytes)) names.add(name);
  return names;
}

/**
 * Delta: the names held resources ask for, kept by reference count and updated per resource received or removed,
 * so a response touching one Cluster costs one lookup, not a pass over every Cluster held.
 */
class HeldDemand {
  private readonly byResource = new Map<string, readonly string[]>();
  private readonly refs = new Map<string, number>();
  private readonly derived: DerivedNames;

  constructor(derived: DerivedNames) {
    this.derived = derived;
  }

  /** Applies one resource (bytes) or its removal (undefined); adds to `add`/`remove` the names that come and go. */
  update(resource: string, bytes: Uint8Array | undefined, add: Set<string>, remove: Set<string>): void {
    const before = this.byResource.get(resource) ?? [];
    const after = bytes === undefined ? [] : this.derived.of(bytes);
    if (before === after) return;
    if (bytes === undefined) this.byResource.delete(resource);
    else this.byResource.set(resource, after);
    for (const name of after) {
      const n = this.refs.get(name) ?? 0;
      this.refs.set(name, n + 1);
      if (n === 0 && !remove.delete(name)) add.add(name);
    }
    for (const name of before) {
      const n = (this.refs.get(name) ?? 1) - 1;
      if (n > 0) this.refs.set(name, n);
      else {
        this.refs.delete(name);
        if (!add.delete(name)) remove.add(name);
      }
    }
  }
}

/**
 * One string per resource name and version in a load-generator process: each proxy decodes its own copies of the
 * same thousands of names (CDS, EDS, LDS, VHDS); shared, a worker's proxies keep less heap for its GC to walk
 * inside the measured ACK times.
 */
const strings = new Map<string, string>();
function intern(s: string): string {
  const hit = strings.get(s);
  if (hit !== undefined) return hit;
  strings.set(s, s);
  return s;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

/** Delta: the types whose held names checkSynced needs. */
const HELD_TYPES = new Set<string>([TYPE_URL.endpoint, TYPE_URL.route]);

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A connection per proxy, like real sidecars (grpc-js otherwise shares one subchannel between equal channels).
  'grpc.use_local_subchannel_pool': 1,
  'grpc.max_receive_message_length': -1,
};

export class SimulatedProxy {
  private readonly o: SimulatedProxyOptions;
  private client: grpc.Client | undefined;
  private call: AdsCall | undefined;
  private synced = false;
  private closed = false;
  private nodeSent = false;
  /** Per type: subscribed names (undefined = wildcard), last version, last nonce, and whether a response came. */
  private readonly subscribed = new Map<string, Set<string>>();
  private readonly version = new Map<string, string>();
  private readonly nonce = new Map<string, string>();
  /**
   * Delta: the resources currently held, name → version, of the types whose names the sync check looks at (EDS,
   * RDS); the others' names are not kept (a proxy's held names cost the load generator's GC, not the control plane).
   */
  private readonly held = new Map<string, Map<string, string>>();
  /** Delta: the EDS names the held Clusters ask for, and the route tables the held Listeners ask for. */
  private readonly demand = new Map<string, { readonly of: HeldDemand; readonly type: string }>([
    [TYPE_URL.cluster, { of: new HeldDemand(EDS_OF_CLUSTER), type: TYPE_URL.endpoint }],
    [TYPE_URL.listener, { of: new HeldDemand(ROUTES_OF_LISTENER), type: TYPE_URL.route }],
  ]);
  private readonly received = new Set<string>();

  constructor(options: SimulatedProxyOptions) {
    this.o = options;
  }

  /** Whether this proxy asks for VHDS (delta streams only, as the sidecar). */
  get vhds(): boolean {
    return this.o.mode === 'delta' && this.o.vhds !== false;
  }

  get node(): Node {
    const ns = this.o.namespace;
    return {
      id: `sidecar~127.0.0.1~p${this.o.index}.${ns}~${ns}.svc.cluster.local`,
      cluster: 'skein-bench',
      metadata: { fields: { NAMESPACE: { string_value: ns } } },
      user_agent_name: 'skein-bench',
      user_agent_version: '1',
      ...(this.vhds ? { client_features: [VHDS_FEATURE] } : {}),
    } as Node;
  }

  start(): void {
    const method = adsMethods()[this.o.mode];
    const counters = this.o.counters;
    const deserialize = (buf: Buffer): object => {
      counters.bytes += buf.length;
      counters.responses++;
      const msg = method.responseDeserialize(buf) as { type_url: string };
      if (msg.type_url === TYPE_URL.endpoint) {
        counters.edsBytes += buf.length;
        counters.edsResponses++;
      }
      return msg;
    };
    const parts = cachedNamesParts(method.requestSerialize);
    const serialize = (value: object): readonly Buffer[] => {
      const out = parts(value);
      counters.requestBytes += 5;
      for (const part of out) counters.requestBytes += part.length;
      return out;
    };
    let call: AdsCall;
    if (this.o.client === 'grpc-js') {
      this.client = new grpc.Client(this.o.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      call = this.client.makeBidiStreamRequest(method.path, joinParts(serialize), deserialize);
    } else call = new H2Call(this.o.address, method.path, serialize, deserialize);
    this.call = call;
    call.on('data', (msg: object) => {
      try {
        if (this.o.mode === 'sotw') this.onSotw(msg as DiscoveryResponse__Output);
        else this.onDelta(msg as DeltaDiscoveryResponse__Output);
      } catch (err) {
        counters.errors++;
        this.o.onError(this.o.slot, `handling a response: ${(err as Error).message}`);
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (this.closed) return;
      counters.errors++;
      this.o.onError(this.o.slot, `ADS stream: ${err.code} ${err.details || err.message}`);
    });
    call.on('end', () => undefined);
    for (const type of [TYPE_URL.cluster, TYPE_URL.listener]) this.subscribe(type, undefined);
  }

  close(): void {
    this.closed = true;
    this.call?.cancel();
    this.client?.close();
  }

  private write(req: DiscoveryRequest | DeltaDiscoveryRequest): void {
    if (!this.nodeSent) {
      req.node = this.node;
      this.nodeSent = true;
    }
    this.call?.write(req);
  }

  /** Subscribes to `names` of a type (undefined: wildcard). */
  private subscribe(type: string, names: Set<string> | undefined): void {
    const before = this.subscribed.get(type);
    if (names) this.subscribed.set(type, names);
    if (this.o.mode === 'sotw') {
      this.write({
        type_url: type,
        version_info: this.version.get(type) ?? '',
        response_nonce: this.nonce.get(type) ?? '',
        resource_names: names ? namesArray(names) : [],
      });
      return;
    }
    const add = names ? [...names].filter((n) => !before?.has(n)) : [];
    const remove = names && before ? [...before].filter((n) => !names.has(n)) : [];
    if (names && add.length === 0 && remove.length === 0 && before) return;
    this.write({ type_url: type, resource_names_subscribe: add, resource_names_unsubscribe: remove });
  }

  private onSotw(res: DiscoveryResponse__Output): void {
    const type = res.type_url;
    const at = monotonicMs();
    this.version.set(type, res.version_info);
    this.nonce.set(type, res.nonce);
    const completed: Expectation[] = [];
    if (type === TYPE_URL.endpoint) {
      for (const any of res.resources) {
        const bytes = any.value as Uint8Array;
        this.o.tracker.inspect(this.o.slot, claName(bytes), bytes, at, completed);
      }
    }
    const names = this.subscribed.get(type);
    this.call?.write({
      type_url: type,
      version_info: res.version_info,
      response_nonce: res.nonce,
      resource_names: names ? namesArray(names) : [],
    } satisfies DiscoveryRequest);
    if (completed.length) this.o.tracker.acked(this.o.slot, completed, monotonicMs());
    this.received.add(type);
    if (type === TYPE_URL.cluster) {
      const want = namesOfAll(EDS_OF_CLUSTER, res.resources.map((a) => a.value as Uint8Array));
      const have = this.subscribed.get(TYPE_URL.endpoint);
      if (!have || !sameSet(have, want)) this.subscribe(TYPE_URL.endpoint, want);
    } else if (type === TYPE_URL.listener) {
      const want = namesOfAll(ROUTES_OF_LISTENER, res.resources.map((a) => a.value as Uint8Array));
      const have = this.subscribed.get(TYPE_URL.route);
      if (!have || !sameSet(have, want)) this.subscribe(TYPE_URL.route, want);
    }
    this.checkSynced();
  }

  private onDelta(res: DeltaDiscoveryResponse__Output): void {
    const type = res.type_url;
    const at = monotonicMs();
    const held = HELD_TYPES.has(type) ? (this.held.get(type) ?? new Map<string, string>()) : undefined;
    if (held) this.held.set(type, held);
    const completed: Expectation[] = [];
    const demand = this.demand.get(type);
    const add = new Set<string>();
    const remove = new Set<string>();
    for (const r of res.resources) {
      const bytes = r.resource?.value as Uint8Array | undefined;
      if (!bytes) continue;
      held?.set(intern(r.name), intern(r.version));
      if (type === TYPE_URL.endpoint) this.o.tracker.inspect(this.o.slot, r.name, bytes, at, completed);
      demand?.of.update(r.name, bytes, add, remove);
    }
    for (const name of res.removed_resources) {
      held?.delete(name);
      demand?.of.update(name, undefined, add, remove);
    }
    this.call?.write({ type_url: type, response_nonce: res.nonce } satisfies DeltaDiscoveryRequest);
    if (completed.length) this.o.tracker.acked(this.o.slot, completed, monotonicMs());
    this.received.add(type);
    if (demand) this.subscribeDelta(demand.type, add, remove);
    // VHDS: every VirtualHost, once (after the first route table, as the sidecar subscribes when a table says vhds).
    if (type === TYPE_URL.route && this.vhds && !this.subscribed.has(TYPE_URL.virtualHost)) {
      this.subscribed.set(TYPE_URL.virtualHost, new Set(['*']));
      this.write({ type_url: TYPE_URL.virtualHost, resource_names_subscribe: ['*'] });
    }
    this.checkSynced();
  }

  /** Delta: subscribes to `add` and unsubscribes from `remove` (the first time even when both are empty). */
  private subscribeDelta(type: string, add: ReadonlySet<string>, remove: ReadonlySet<string>): void {
    const before = this.subscribed.get(type);
    if (before && add.size === 0 && remove.size === 0) return;
    const names = before ?? new Set<string>();
    for (const name of add) names.add(name);
    for (const name of remove) names.delete(name);
    this.subscribed.set(type, names);
    this.write({ type_url: type, resource_names_subscribe: [...add], resource_names_unsubscribe: [...remove] });
  }

  private checkSynced(): void {
    if (this.synced) return;
    for (const t of [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route]) {
      if (!this.received.has(t)) return;
    }
    if (this.vhds && !this.received.has(TYPE_URL.virtualHost)) return;
    if (this.o.mode === 'delta') {
      // Every subscribed EDS and RDS name must have arrived.
      for (const t of [TYPE_URL.endpoint, TYPE_URL.route]) {
        const want = this.subscribed.get(t);
        const held = this.held.get(t);
        if (want && (!held || [...want].some((n) => !held.has(n)))) return;
      }
    }
    this.synced = true;
    this.o.onSynced(this.o.slot);
  }
}
