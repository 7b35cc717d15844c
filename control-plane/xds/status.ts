// Delivery status per proxy, per type and per resource: what was sent, ACKed and NACKed (with the error text).
import { ADS_ORDER, shortName, type TypeUrl } from '../../proto/index.ts';
import type { XdsMode } from './metrics.ts';

/** SYNCED: the latest response was ACKed; STALE: sent but not ACKed yet; NACKED: the latest response was rejected. */
export type DeliveryState = 'SYNCED' | 'STALE' | 'NACKED' | 'NOT_SENT';

export interface NackRecord {
  /** The version the proxy rejected (what we sent with that nonce). */
  readonly version: string;
  readonly nonce: string;
  /** error_detail.message as the proxy sent it. */
  readonly message: string;
  /** The resources of the rejected response the message names, else every resource of that response (capped). */
  readonly resourceNames: readonly string[];
  readonly at: string;
}

export interface ResourceStatus {
  readonly name: string;
  readonly sentVersion: string;
  /** null when the proxy has not ACKed any version of it on this stream. */
  readonly ackedVersion: string | null;
}

export interface TypeStatus {
  readonly type: string;
  readonly typeUrl: string;
  readonly state: DeliveryState;
  /** `*` for a wildcard subscription, else the number of names subscribed. */
  readonly subscribed: string;
  readonly sentVersion: string | null;
  readonly sentNonce: string | null;
  readonly sentAt: string | null;
  readonly ackedVersion: string | null;
  readonly ackedAt: string | null;
  readonly lastNack: NackRecord | null;
  readonly resources?: readonly ResourceStatus[];
}

export interface ProxyStatus {
  readonly stream: number;
  readonly nodeId: string;
  readonly scope: string;
  readonly userAgent: string;
  readonly mode: XdsMode;
  readonly peer: string;
  readonly connectedSince: string;
  readonly types: readonly TypeStatus[];
  /** Type URLs the proxy asked for that Skein does not serve (answered with nothing). */
  readonly unknownTypeUrls: readonly string[];
  /** When the proxy's workload certificate expires, as it said when the stream opened (node metadata CERT_NOT_AFTER). */
  readonly certNotAfter?: string;
}

export interface StreamInfo {
  readonly nodeId: string;
  readonly scope: string;
  readonly userAgent: string;
  readonly mode: XdsMode;
  readonly peer: string;
  readonly certNotAfter?: string | undefined;
}

/** How a stream lists its per-resource delivery state on demand (computed lazily: status never copies resources). */
export type ResourceView = (typeUrl: TypeUrl) => Iterable<ResourceStatus>;

interface TypeRecord {
  subscribed: string;
  sentVersion: string | null;
  sentNonce: string | null;
  sentAt: number | null;
  ackedNonce: string | null;
  ackedVersion: string | null;
  ackedAt: number | null;
  lastNack: NackRecord | null;
}

const MAX_NACK_NAMES = 20;

/** Picks the resources a NACK message talks about; falls back to the whole response, capped. */
export function nackedNames(message: string, sentNames: Iterable<string>): string[] {
  const all: string[] = [];
  const named: string[] = [];
  for (const name of sentNames) {
    if (all.length < MAX_NACK_NAMES) all.push(name);
    if (named.length < MAX_NACK_NAMES && name !== '' && message.includes(name)) named.push(name);
  }
  return named.length > 0 ? named : all;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The record of one ADS stream; the stream reports to it and closes it when it ends. */
export class ProxyStatusRecord {
  readonly id: number;
  readonly info: StreamInfo;
  readonly connectedSince = Date.now();
  readonly unknownTypeUrls = new Set<string>();
  private readonly types = new Map<TypeUrl, TypeRecord>();
  private readonly owner: StatusRegistry;
  private view: ResourceView = () => [];

  constructor(owner: StatusRegistry, id: number, info: StreamInfo) {
    this.owner = owner;
    this.id = id;
    this.info = info;
  }

  setResourceView(view: ResourceView): void {
    this.view = view;
  }

  private type(typeUrl: TypeUrl): TypeRecord {
    let rec = this.types.get(typeUrl);
    if (!rec) {
      rec = {
        subscribed: '',
        sentVersion: null,
        sentNonce: null,
        sentAt: null,
        ackedNonce: null,
        ackedVersion: null,
        ackedAt: null,
        lastNack: null,
      };
      this.types.set(typeUrl, rec);
    }
    return rec;
  }

  subscribed(typeUrl: TypeUrl, wildcard: boolean, names: number): void {
    this.type(typeUrl).subscribed = wildcard ? (names > 0 ? `* +${names}` : '*') : String(names);
  }

  sent(typeUrl: TypeUrl, nonce: string, version: string): void {
    const rec = this.type(typeUrl);
    rec.sentNonce = nonce;
    rec.sentVersion = version;
    rec.sentAt = Date.now();
  }

  acked(typeUrl: TypeUrl, nonce: string, version: string): void {
    const rec = this.type(typeUrl);
    rec.ackedNonce = nonce;
    rec.ackedVersion = version;
    rec.ackedAt = Date.now();
  }

  nacked(typeUrl: TypeUrl, nack: Omit<NackRecord, 'at'>): void {
    this.type(typeUrl).lastNack = { ...nack, at: new Date().toISOString() };
  }

  unknownType(typeUrl: string): void {
    this.unknownTypeUrls.add(typeUrl);
  }

  close(): void {
    this.owner.remove(this.id);
  }

  toJSON(withResources = false): ProxyStatus {
    const types: TypeStatus[] = [];
    for (const typeUrl of ADS_ORDER) {
      const rec = this.types.get(typeUrl);
      if (!rec) continue;
      types.push({
        type: shortName(typeUrl),
        typeUrl,
        state: stateOf(rec),
        subscribed: rec.subscribed,
        sentVersion: rec.sentVersion,
        sentNonce: rec.sentNonce,
        sentAt: iso(rec.sentAt),
        ackedVersion: rec.ackedVersion,
        ackedAt: iso(rec.ackedAt),
        lastNack: rec.lastNack,
        ...(withResources ? { resources: [...this.view(typeUrl)] } : {}),
      });
    }
    return {
      stream: this.id,
      nodeId: this.info.nodeId,
      scope: this.info.scope,
      userAgent: this.info.userAgent,
      mode: this.info.mode,
      peer: this.info.peer,
      connectedSince: new Date(this.connectedSince).toISOString(),
      types,
      unknownTypeUrls: [...this.unknownTypeUrls],
      ...(this.info.certNotAfter !== undefined ? { certNotAfter: this.info.certNotAfter } : {}),
    };
  }
}

function stateOf(rec: TypeRecord): DeliveryState {
  if (rec.sentNonce === null) return 'NOT_SENT';
  if (rec.lastNack && rec.lastNack.nonce === rec.sentNonce) return 'NACKED';
  return rec.ackedNonce === rec.sentNonce ? 'SYNCED' : 'STALE';
}

export interface StatusQuery {
  /** Only streams of this node id. */
  readonly nodeId?: string;
  /** Include the per-resource sent/ACKed versions (can be large). */
  readonly resources?: boolean;
}

/** Every open ADS stream's delivery status; shared by the xDS server (writer) and the admin server (reader). */
export class StatusRegistry {
  private readonly records = new Map<number, ProxyStatusRecord>();
  private nextId = 1;

  open(info: StreamInfo): ProxyStatusRecord {
    const rec = new ProxyStatusRecord(this, this.nextId++, info);
    this.records.set(rec.id, rec);
    return rec;
  }

  remove(id: number): void {
    this.records.delete(id);
  }

  get size(): number {
    return this.records.size;
  }

  /** Sorted by node id, then stream id. */
  list(query: StatusQuery = {}): ProxyStatus[] {
    const out: ProxyStatus[] = [];
    for (const rec of this.records.values()) {
      if (query.nodeId !== undefined && rec.info.nodeId !== query.nodeId) continue;
      out.push(rec.toJSON(query.resources === true));
    }
    return out.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : a.stream - b.stream));
  }
}
