// Delivery status per proxy, per type and per resource: what was sent, ACKed and NACKed (with the error text).
import { ADS_ORDER, shortName, type TypeUrl } from '../../proto/index.ts';
import type { XdsMode } from './metrics.ts';

/**
 * Which service a stream came in on: ADS (every type), or a per-type service (CDS, EDS, LDS, RDS: that type alone,
 * for Envoys configured with cds_config/lds_config and EDS/RDS config sources rather than ads_config).
 */
export type XdsService = 'ADS' | 'CDS' | 'EDS' | 'LDS' | 'RDS';

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
  /** The stream's id; for per-type streams merged into one entry, the oldest one's. */
  readonly stream: number;
  readonly nodeId: string;
  readonly scope: string;
  readonly userAgent: string;
  /** `mixed`: per-type streams of the node use both SotW and delta. */
  readonly mode: XdsMode | 'mixed';
  /**
   * A node without ADS: how many per-type streams (CDS, EDS, LDS, RDS services) it has open, all shown in this one
   * entry (Envoy opens one stream per config source: often one per EDS cluster). Absent for an ADS stream.
   */
  readonly perTypeStreams?: number;
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
  readonly service: XdsService;
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

/** A character that can continue a resource name (`c` is not named by "cluster", nor `x:80` by "x:8080"). */
const NAME_CHAR = /[A-Za-z0-9_.-]/;

/** Whether a NACK message names a resource: the name as a whole word (quotes, spaces, `:` or `|` around it). */
export function mentions(message: string, name: string): boolean {
  if (name === '') return false;
  for (let at = message.indexOf(name); at >= 0; at = message.indexOf(name, at + 1)) {
    const before = message[at - 1];
    const after = message[at + name.length];
    if ((before === undefined || !NAME_CHAR.test(before)) && (after === undefined || !NAME_CHAR.test(after))) return true;
  }
  return false;
}

/** Picks the resources a NACK message talks about; falls back to the whole response, capped. */
export function nackedNames(message: string, sentNames: Iterable<string>): string[] {
  const all: string[] = [];
  const named: string[] = [];
  for (const name of sentNames) {
    if (all.length < MAX_NACK_NAMES) all.push(name);
    if (named.length < MAX_NACK_NAMES && mentions(message, name)) named.push(name);
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

const STATE_RANK: Record<DeliveryState, number> = { NOT_SENT: 0, SYNCED: 1, STALE: 2, NACKED: 3 };

/** The later of two ISO times (null: never). */
const later = (a: string | null, b: string | null): boolean => b !== null && (a === null || b > a);

/**
 * One type's status over several per-type streams of a node (Envoy's EDS and RDS without ADS: one stream per config
 * source). The worst state wins (NACKED, STALE, SYNCED, NOT_SENT); versions and the NACK are the latest ones.
 */
function combineTypes(all: readonly TypeStatus[]): TypeStatus {
  let out = all[0] as TypeStatus;
  let names = 0;
  let wildcard: string | undefined;
  let resources: ResourceStatus[] | undefined;
  for (const t of all) {
    if (t.subscribed.startsWith('*')) wildcard ??= t.subscribed;
    else names += Number(t.subscribed) || 0;
    if (t.resources) (resources ??= []).push(...t.resources);
    if (t === out) continue;
    const sent = later(out.sentAt, t.sentAt) ? t : out;
    const acked = later(out.ackedAt, t.ackedAt) ? t : out;
    const nack = later(out.lastNack?.at ?? null, t.lastNack?.at ?? null) ? t.lastNack : out.lastNack;
    out = {
      ...out,
      state: STATE_RANK[t.state] > STATE_RANK[out.state] ? t.state : out.state,
      sentVersion: sent.sentVersion,
      sentNonce: sent.sentNonce,
      sentAt: sent.sentAt,
      ackedVersion: acked.ackedVersion,
      ackedAt: acked.ackedAt,
      lastNack: nack,
    };
  }
  return { ...out, subscribed: wildcard ?? String(names), ...(resources ? { resources } : {}) };
}

/** A node's per-type streams (oldest first) as one entry, with every type they carry. */
function mergePerType(streams: readonly ProxyStatus[]): ProxyStatus {
  const first = streams[0] as ProxyStatus;
  const byType = new Map<string, TypeStatus[]>();
  const unknown = new Set<string>();
  for (const p of streams) {
    for (const t of p.types) {
      const list = byType.get(t.typeUrl);
      if (list) list.push(t);
      else byType.set(t.typeUrl, [t]);
    }
    for (const u of p.unknownTypeUrls) unknown.add(u);
  }
  const types: TypeStatus[] = [];
  for (const typeUrl of ADS_ORDER) {
    const list = byType.get(typeUrl);
    if (list) types.push(combineTypes(list));
  }
  return {
    ...first,
    mode: streams.every((p) => p.mode === first.mode) ? first.mode : 'mixed',
    perTypeStreams: streams.length,
    types,
    unknownTypeUrls: [...unknown],
  };
}

export interface StatusQuery {
  /** Only streams of this node id. */
  readonly nodeId?: string;
  /** Include the per-resource sent/ACKed versions (can be large). */
  readonly resources?: boolean;
}

/** Every open xDS stream's delivery status (a node's per-type streams listed as one proxy); shared by the xDS server (writer) and the admin server (reader). */
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

  /** Open streams (a node's per-type streams count one each). */
  get size(): number {
    return this.records.size;
  }

  /**
   * One entry per ADS stream, and one per node for its per-type streams (CDS, EDS, LDS, RDS services: Envoy without
   * ads_config opens several, one node all the same). Sorted by node id, then stream id.
   */
  list(query: StatusQuery = {}): ProxyStatus[] {
    const out: ProxyStatus[] = [];
    const perType = new Map<string, ProxyStatus[]>();
    for (const rec of this.records.values()) {
      if (query.nodeId !== undefined && rec.info.nodeId !== query.nodeId) continue;
      const status = rec.toJSON(query.resources === true);
      if (rec.info.service === 'ADS') {
        out.push(status);
        continue;
      }
      const streams = perType.get(rec.info.nodeId);
      if (streams) streams.push(status);
      else perType.set(rec.info.nodeId, [status]);
    }
    for (const streams of perType.values()) out.push(mergePerType(streams));
    return out.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : a.stream - b.stream));
  }
}
