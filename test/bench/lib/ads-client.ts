// A simulated sidecar on ADS (state of the world or delta): subscribes like Envoy, ACKs everything, counts bytes.
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
} from '../../../proto/index.ts';
import { type ChangeTracker, type Expectation, monotonicMs } from './change-tracker.ts';

export type XdsMode = 'sotw' | 'delta';

export interface ProxyCounters {
  /** Serialized response bytes received, all types. */
  bytes: number;
  responses: number;
  edsBytes: number;
  edsResponses: number;
  /** Responses or requests that failed (stream errors, NACK-worthy payloads). */
  errors: number;
}

export function newCounters(): ProxyCounters {
  return { bytes: 0, responses: 0, edsBytes: 0, edsResponses: 0, errors: 0 };
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
  /** Called once, when CDS, EDS (every subscribed cluster), LDS and RDS have all been received and ACKed. */
  readonly onSynced: (slot: number) => void;
  readonly onError: (slot: number, message: string) => void;
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
 * What each Cluster asks for over EDS (service_name, else its name; '' for non-EDS clusters), remembered by the
 * Cluster's bytes: the proxies of one worker receive the same Clusters, and decoding each of them once per proxy
 * would make the load generator, not the control plane, the bottleneck.
 */
const edsNameByBytes = new Map<string, string>();

function edsNameOf(bytes: Uint8Array): string {
  const key = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  let name = edsNameByBytes.get(key);
  if (name === undefined) {
    const c = decodeMessage<Cluster__Output>(TYPE_URL.cluster, bytes);
    name = c.type === 'EDS' ? c.eds_cluster_config?.service_name || c.name : '';
    if (edsNameByBytes.size > 200_000) edsNameByBytes.clear();
    edsNameByBytes.set(key, name);
  }
  return name;
}

/** EDS names a set of Clusters asks for. */
function edsNames(clusters: Iterable<Uint8Array>): Set<string> {
  const names = new Set<string>();
  for (const bytes of clusters) {
    const name = edsNameOf(bytes);
    if (name) names.add(name);
  }
  return names;
}

/** Route configuration names the Listeners' HTTP connection managers ask for over RDS. */
function routeNames(listeners: Iterable<Uint8Array>): Set<string> {
  const names = new Set<string>();
  const fromHcm = (any: { type_url: string; value: Uint8Array } | null | undefined) => {
    if (!any || any.type_url !== EXTENSION_TYPE_URL.httpConnectionManager) return;
    const hcm = decodeMessage<HttpConnectionManager__Output>(any.type_url, any.value);
    if (hcm.rds?.route_config_name) names.add(hcm.rds.route_config_name);
  };
  for (const bytes of listeners) {
    const l = decodeMessage<Listener__Output>(TYPE_URL.listener, bytes);
    fromHcm(l.api_listener?.api_listener);
    for (const chain of l.filter_chains ?? []) for (const f of chain.filters ?? []) fromHcm(f.typed_config);
  }
  return names;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A connection per proxy, like real sidecars (grpc-js otherwise shares one subchannel between equal channels).
  'grpc.use_local_subchannel_pool': 1,
  'grpc.max_receive_message_length': -1,
};

export class SimulatedProxy {
  private readonly o: SimulatedProxyOptions;
  private readonly client: grpc.Client;
  private call: grpc.ClientDuplexStream<object, object> | undefined;
  private synced = false;
  private closed = false;
  private nodeSent = false;
  /** Per type: subscribed names (undefined = wildcard), last version, last nonce, and whether a response came. */
  private readonly subscribed = new Map<string, Set<string>>();
  private readonly version = new Map<string, string>();
  private readonly nonce = new Map<string, string>();
  /** Delta: the resources currently held, per type, name → bytes (CDS/LDS) or version (EDS/RDS). */
  private readonly held = new Map<string, Map<string, Uint8Array | string>>();
  private readonly received = new Set<string>();

  constructor(options: SimulatedProxyOptions) {
    this.o = options;
    this.client = new grpc.Client(options.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  get node(): Node {
    const ns = this.o.namespace;
    return {
      id: `sidecar~127.0.0.1~p${this.o.index}.${ns}~${ns}.svc.cluster.local`,
      cluster: 'skein-bench',
      metadata: { fields: { NAMESPACE: { string_value: ns } } },
      user_agent_name: 'skein-bench',
      user_agent_version: '1',
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
    const call = this.client.makeBidiStreamRequest(method.path, method.requestSerialize, deserialize);
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
    this.client.close();
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
        resource_names: names ? [...names] : [],
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
      resource_names: names ? [...names] : [],
    } satisfies DiscoveryRequest);
    if (completed.length) this.o.tracker.acked(this.o.slot, completed, monotonicMs());
    this.received.add(type);
    if (type === TYPE_URL.cluster) {
      const want = edsNames(res.resources.map((a) => a.value as Uint8Array));
      const have = this.subscribed.get(TYPE_URL.endpoint);
      if (!have || !sameSet(have, want)) this.subscribe(TYPE_URL.endpoint, want);
    } else if (type === TYPE_URL.listener) {
      const want = routeNames(res.resources.map((a) => a.value as Uint8Array));
      const have = this.subscribed.get(TYPE_URL.route);
      if (!have || !sameSet(have, want)) this.subscribe(TYPE_URL.route, want);
    }
    this.checkSynced();
  }

  private onDelta(res: DeltaDiscoveryResponse__Output): void {
    const type = res.type_url;
    const at = monotonicMs();
    const held = this.held.get(type) ?? new Map<string, Uint8Array | string>();
    this.held.set(type, held);
    const completed: Expectation[] = [];
    const keepBytes = type === TYPE_URL.cluster || type === TYPE_URL.listener;
    for (const r of res.resources) {
      const bytes = r.resource?.value as Uint8Array | undefined;
      if (!bytes) continue;
      held.set(r.name, keepBytes ? bytes : r.version);
      if (type === TYPE_URL.endpoint) this.o.tracker.inspect(this.o.slot, r.name, bytes, at, completed);
    }
    for (const name of res.removed_resources) held.delete(name);
    this.call?.write({ type_url: type, response_nonce: res.nonce } satisfies DeltaDiscoveryRequest);
    if (completed.length) this.o.tracker.acked(this.o.slot, completed, monotonicMs());
    this.received.add(type);
    if (type === TYPE_URL.cluster) {
      this.subscribe(TYPE_URL.endpoint, edsNames(held.values() as Iterable<Uint8Array>));
    } else if (type === TYPE_URL.listener) {
      this.subscribe(TYPE_URL.route, routeNames(held.values() as Iterable<Uint8Array>));
    }
    this.checkSynced();
  }

  private checkSynced(): void {
    if (this.synced) return;
    for (const t of [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route]) {
      if (!this.received.has(t)) return;
    }
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
