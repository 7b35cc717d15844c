// An in-process ADS server for tests: records every request (ACK, NACK text, subscriptions) and pushes resources.
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  type AnyMessage,
  type DeltaDiscoveryRequest__Output,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest__Output,
  type DiscoveryResponse,
  grpcDefinitions,
  type Node__Output,
  pack,
  TYPE_URL,
} from '../../proto/index.ts';

export interface RecordedRequest {
  readonly protocol: 'sotw' | 'delta';
  /** Which stream (1, 2, …) sent it: a new number after every reconnect. */
  readonly stream: number;
  readonly typeUrl: string;
  /**
   * `request`: no nonce (the first of its type on a stream); `nack`: carries error_detail; `ack`: carries a nonce.
   * A SotW subscription change also carries the last nonce, so it is recorded as `ack` (look at `names`).
   */
  readonly kind: 'request' | 'ack' | 'nack';
  readonly nonce: string;
  /** SotW: version_info. */
  readonly versionInfo: string;
  /** SotW: resource_names; delta: resource_names_subscribe. */
  readonly names: readonly string[];
  readonly unsubscribe: readonly string[];
  readonly initialVersions: Readonly<Record<string, string>>;
  readonly errorText?: string;
  readonly node?: Node__Output;
}

interface StoredResource {
  readonly name: string;
  readonly version: string;
  readonly any: AnyMessage;
}

interface SotwStream {
  readonly protocol: 'sotw';
  readonly call: grpc.ServerDuplexStream<DiscoveryRequest__Output, DiscoveryResponse>;
  /** Per type: the names the client asked for (empty = wildcard). */
  readonly subscribed: Map<string, string[]>;
}

interface DeltaStream {
  readonly protocol: 'delta';
  readonly call: grpc.ServerDuplexStream<DeltaDiscoveryRequest__Output, DeltaDiscoveryResponse>;
  readonly wildcard: Set<string>;
  readonly subscribed: Map<string, Set<string>>;
  /** Per type: the version of each resource the client holds. */
  readonly known: Map<string, Map<string, string>>;
}

const WILDCARD_TYPES = new Set<string>([TYPE_URL.cluster, TYPE_URL.listener]);

function nameOf(typeUrl: string, message: Record<string, unknown>): string {
  return String(typeUrl === TYPE_URL.endpoint ? message.cluster_name : message.name);
}

export interface XdsPeerOptions {
  /** Serve DeltaAggregatedResources (default true); false answers it UNIMPLEMENTED like a SotW-only server. */
  readonly delta?: boolean;
  /** Listen on this port (e.g. to come back on the same address after stop()); default 0. */
  readonly port?: number;
}

export class XdsPeer {
  readonly requests: RecordedRequest[] = [];
  readonly resources = new Map<string, Map<string, StoredResource>>();
  port = 0;
  private readonly server = new grpc.Server();
  private readonly streams = new Set<SotwStream | DeltaStream>();
  private streamCount = 0;
  private nonce = 0;
  private readonly typeVersions = new Map<string, number>();
  private readonly waiters = new Set<() => void>();

  static async start(options: XdsPeerOptions = {}): Promise<XdsPeer> {
    const peer = new XdsPeer();
    await peer.listen(options);
    return peer;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get openStreams(): number {
    return this.streams.size;
  }

  private async listen(options: XdsPeerOptions): Promise<void> {
    const service = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service;
    const handlers: grpc.UntypedServiceImplementation = {
      StreamAggregatedResources: (call: SotwStream['call']) => this.onSotw(call),
    };
    if (options.delta !== false) handlers.DeltaAggregatedResources = (call: DeltaStream['call']) => this.onDelta(call);
    this.server.addService(service, handlers);
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${options.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
  }

  /** Ends every stream and the server. */
  async stop(): Promise<void> {
    for (const s of this.streams) s.call.end();
    this.streams.clear();
    this.server.forceShutdown();
  }

  /** Adds or replaces resources (plain objects with Envoy's field names) and pushes them to subscribed streams. */
  set(typeUrl: string, ...messages: Record<string, unknown>[]): void {
    for (const m of messages) this.setAny(typeUrl, nameOf(typeUrl, m), pack(typeUrl, m));
    this.push(typeUrl);
  }

  /** Stores a resource as raw Any bytes without pushing (for undecodable resources); call push() after. */
  setAny(typeUrl: string, name: string, any: AnyMessage): void {
    let byName = this.resources.get(typeUrl);
    if (!byName) this.resources.set(typeUrl, (byName = new Map()));
    const version = createHash('sha256').update(any.value).digest('hex').slice(0, 12);
    byName.set(name, { name, version, any });
  }

  remove(typeUrl: string, ...names: string[]): void {
    for (const n of names) this.resources.get(typeUrl)?.delete(n);
    this.push(typeUrl);
  }

  /** Sends the current resources of `typeUrl` to every stream subscribed to it. */
  push(typeUrl: string): void {
    this.typeVersions.set(typeUrl, (this.typeVersions.get(typeUrl) ?? 0) + 1);
    for (const s of this.streams) {
      if (s.protocol === 'sotw') {
        if (s.subscribed.has(typeUrl)) this.sendSotw(s, typeUrl);
      } else if (s.subscribed.has(typeUrl) || s.wildcard.has(typeUrl)) {
        this.sendDelta(s, typeUrl, false);
      }
    }
  }

  /** Resolves with the first recorded request (from `from` on) that matches; rejects after timeoutMs. */
  async waitFor(match: (r: RecordedRequest) => boolean, timeoutMs = 5000, from = 0): Promise<RecordedRequest> {
    const found = () => this.requests.slice(from).find(match);
    const hit = found();
    if (hit) return hit;
    return new Promise((resolve, reject) => {
      const check = () => {
        const r = found();
        if (!r) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(r);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`xds-peer: no matching request within ${timeoutMs} ms; got ${JSON.stringify(this.summary())}`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  /** A compact view of the requests, for failure messages. */
  summary(): string[] {
    return this.requests.map(
      (r) => `${r.stream}:${r.protocol}:${r.typeUrl.split('.').pop()}:${r.kind}:${r.names.join(',')}${r.errorText ? `:${r.errorText}` : ''}`,
    );
  }

  private record(r: RecordedRequest): void {
    this.requests.push(r);
    for (const w of [...this.waiters]) w();
  }

  private versionOf(typeUrl: string): string {
    return String(this.typeVersions.get(typeUrl) ?? 0);
  }

  private onSotw(call: SotwStream['call']): void {
    const stream: SotwStream = { protocol: 'sotw', call, subscribed: new Map() };
    const id = ++this.streamCount;
    this.streams.add(stream);
    const done = () => this.streams.delete(stream);
    call.on('end', () => {
      done();
      call.end();
    });
    call.on('error', done);
    call.on('cancelled', done);
    call.on('data', (req: DiscoveryRequest__Output) => {
      const kind = req.error_detail ? 'nack' : req.response_nonce ? 'ack' : 'request';
      this.record({
        protocol: 'sotw',
        stream: id,
        typeUrl: req.type_url,
        kind,
        nonce: req.response_nonce,
        versionInfo: req.version_info,
        names: req.resource_names,
        unsubscribe: [],
        initialVersions: {},
        ...(req.error_detail ? { errorText: req.error_detail.message } : {}),
        ...(req.node ? { node: req.node } : {}),
      });
      const before = stream.subscribed.get(req.type_url);
      const names = [...req.resource_names].sort();
      stream.subscribed.set(req.type_url, names);
      const changed = !before || before.join('\0') !== names.join('\0');
      if (kind === 'request' || changed) this.sendSotw(stream, req.type_url);
    });
  }

  private sendSotw(stream: SotwStream, typeUrl: string): void {
    const names = stream.subscribed.get(typeUrl) ?? [];
    const all = [...(this.resources.get(typeUrl)?.values() ?? [])];
    const wildcard = names.length === 0 && WILDCARD_TYPES.has(typeUrl);
    const chosen = wildcard ? all : all.filter((r) => names.includes(r.name));
    stream.call.write({
      version_info: this.versionOf(typeUrl),
      type_url: typeUrl,
      nonce: String(++this.nonce),
      resources: chosen.map((r) => r.any),
    });
  }

  private onDelta(call: DeltaStream['call']): void {
    const stream: DeltaStream = { protocol: 'delta', call, wildcard: new Set(), subscribed: new Map(), known: new Map() };
    const id = ++this.streamCount;
    this.streams.add(stream);
    const done = () => this.streams.delete(stream);
    call.on('end', () => {
      done();
      call.end();
    });
    call.on('error', done);
    call.on('cancelled', done);
    call.on('data', (req: DeltaDiscoveryRequest__Output) => {
      const t = req.type_url;
      const kind = req.error_detail ? 'nack' : req.response_nonce ? 'ack' : 'request';
      this.record({
        protocol: 'delta',
        stream: id,
        typeUrl: t,
        kind,
        nonce: req.response_nonce,
        versionInfo: '',
        names: req.resource_names_subscribe,
        unsubscribe: req.resource_names_unsubscribe,
        initialVersions: req.initial_resource_versions,
        ...(req.error_detail ? { errorText: req.error_detail.message } : {}),
        ...(req.node ? { node: req.node } : {}),
      });
      const first = !stream.subscribed.has(t) && !stream.wildcard.has(t);
      let subs = stream.subscribed.get(t);
      if (!subs) stream.subscribed.set(t, (subs = new Set()));
      if (first) {
        stream.known.set(t, new Map(Object.entries(req.initial_resource_versions)));
        if (req.resource_names_subscribe.length === 0) stream.wildcard.add(t);
      }
      for (const n of req.resource_names_subscribe) {
        if (n === '*') stream.wildcard.add(t);
        else subs.add(n);
      }
      for (const n of req.resource_names_unsubscribe) {
        if (n === '*') stream.wildcard.delete(t);
        subs.delete(n);
        stream.known.get(t)?.delete(n);
      }
      if (kind === 'nack') return;
      if (first || req.resource_names_subscribe.length > 0) this.sendDelta(stream, t, first);
    });
  }

  private sendDelta(stream: DeltaStream, typeUrl: string, always: boolean): void {
    const known = stream.known.get(typeUrl) ?? new Map<string, string>();
    stream.known.set(typeUrl, known);
    const subs = stream.subscribed.get(typeUrl) ?? new Set<string>();
    const wildcard = stream.wildcard.has(typeUrl);
    const stored = this.resources.get(typeUrl) ?? new Map<string, StoredResource>();
    const resources: StoredResource[] = [];
    for (const r of stored.values()) {
      if ((wildcard || subs.has(r.name)) && known.get(r.name) !== r.version) resources.push(r);
    }
    const removed = [...known.keys()].filter((n) => !stored.has(n));
    if (!always && resources.length === 0 && removed.length === 0) return;
    for (const r of resources) known.set(r.name, r.version);
    for (const n of removed) known.delete(n);
    stream.call.write({
      system_version_info: this.versionOf(typeUrl),
      type_url: typeUrl,
      nonce: String(++this.nonce),
      resources: resources.map((r) => ({ name: r.name, version: r.version, resource: r.any })),
      removed_resources: removed,
    });
  }
}
