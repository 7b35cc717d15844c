// The two ADS wire protocols (delta and state of the world) behind one small interface the xDS client drives.
import type * as grpc from '@grpc/grpc-js';
import {
  type AggregatedDiscoveryServiceClient,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse__Output,
  type DiscoveryRequest,
  type DiscoveryResponse__Output,
  type Node,
  TYPE_URL,
} from '../../proto/index.ts';

/** One response, normalised across protocols. */
export interface IncomingUpdate {
  readonly typeUrl: string;
  readonly nonce: string;
  /** SotW version_info, or delta system_version_info (may be empty). */
  readonly versionInfo: string;
  readonly items: readonly { any: { type_url: string; value: Uint8Array }; version?: string; name?: string }[];
  readonly removed: readonly string[];
  /** True when the response holds the whole type (SotW CDS and LDS): anything missing is deleted. */
  readonly fullState: boolean;
}

export interface StreamEvents {
  onUpdate(update: IncomingUpdate): void;
  /** The server sent response headers or a first message: the stream is up. */
  onOpen(): void;
  onClose(code: number, details: string): void;
}

export interface AdsStream {
  readonly protocol: 'delta' | 'sotw';
  /**
   * Makes the server's subscription for `typeUrl` equal `names` ('wildcard' for CDS/LDS). `known` holds the versions
   * the client already has (sent as initial_resource_versions on a fresh delta stream). No-op when nothing changed.
   */
  subscribe(typeUrl: string, names: readonly string[] | 'wildcard', known: Readonly<Record<string, string>>): void;
  ack(update: IncomingUpdate): void;
  nack(update: IncomingUpdate, message: string): void;
  close(): void;
}

const INVALID_ARGUMENT = 3;
const FULL_STATE_TYPES = new Set<string>([TYPE_URL.cluster, TYPE_URL.listener]);

function watch<Req, Res>(call: grpc.ClientDuplexStream<Req, Res>, events: StreamEvents, onData: (msg: Res) => void): void {
  let opened = false;
  let closed = false;
  const open = () => {
    if (!opened) {
      opened = true;
      events.onOpen();
    }
  };
  call.on('metadata', open);
  call.on('data', (msg: Res) => {
    open();
    onData(msg);
  });
  const close = (code: number, details: string) => {
    if (closed) return;
    closed = true;
    events.onClose(code, details);
  };
  call.on('error', (err: grpc.ServiceError) => close(err.code ?? 2, err.details ?? err.message));
  call.on('status', (s: grpc.StatusObject) => close(s.code, s.details));
  call.on('end', () => close(0, 'stream ended by the server'));
}

const sameNames = (a: readonly string[] | undefined, b: readonly string[]) =>
  a !== undefined && a.length === b.length && a.every((n, i) => n === b[i]);

/** `versions`: per type URL, the version_info accepted on earlier streams (sent again so the server can skip resends). */
export function openSotwStream(
  client: AggregatedDiscoveryServiceClient,
  node: Node,
  events: StreamEvents,
  versions: Readonly<Record<string, string>> = {},
): AdsStream {
  const call = client.StreamAggregatedResources();
  let nodeSent = false;
  const sent = new Map<string, string[]>();
  const accepted = new Map<string, { version: string; nonce: string }>(
    Object.entries(versions).map(([type, version]) => [type, { version, nonce: '' }]),
  );
  const write = (req: DiscoveryRequest) => {
    if (!nodeSent) {
      req = { ...req, node };
      nodeSent = true;
    }
    call.write(req);
  };
  watch(call, events, (r: DiscoveryResponse__Output) => {
    events.onUpdate({
      typeUrl: r.type_url,
      nonce: r.nonce,
      versionInfo: r.version_info,
      items: r.resources.map((any) => ({ any })),
      removed: [],
      fullState: FULL_STATE_TYPES.has(r.type_url),
    });
  });
  return {
    protocol: 'sotw',
    subscribe(typeUrl, names) {
      const list = names === 'wildcard' ? [] : [...names].sort();
      const before = sent.get(typeUrl);
      if (sameNames(before, list) || (before === undefined && names !== 'wildcard' && list.length === 0)) return;
      sent.set(typeUrl, list);
      const last = accepted.get(typeUrl);
      write({ type_url: typeUrl, resource_names: list, version_info: last?.version ?? '', response_nonce: last?.nonce ?? '' });
    },
    ack(update) {
      accepted.set(update.typeUrl, { version: update.versionInfo, nonce: update.nonce });
      write({
        type_url: update.typeUrl,
        resource_names: sent.get(update.typeUrl) ?? [],
        version_info: update.versionInfo,
        response_nonce: update.nonce,
      });
    },
    nack(update, message) {
      const last = accepted.get(update.typeUrl);
      accepted.set(update.typeUrl, { version: last?.version ?? '', nonce: update.nonce });
      write({
        type_url: update.typeUrl,
        resource_names: sent.get(update.typeUrl) ?? [],
        version_info: last?.version ?? '',
        response_nonce: update.nonce,
        error_detail: { code: INVALID_ARGUMENT, message },
      });
    },
    close: () => call.cancel(),
  };
}

export function openDeltaStream(
  client: AggregatedDiscoveryServiceClient,
  node: Node,
  events: StreamEvents,
  _versions: Readonly<Record<string, string>> = {},
): AdsStream {
  const call = client.DeltaAggregatedResources();
  let nodeSent = false;
  const sent = new Map<string, Set<string> | 'wildcard'>();
  const write = (req: DeltaDiscoveryRequest) => {
    if (!nodeSent) {
      req = { ...req, node };
      nodeSent = true;
    }
    call.write(req);
  };
  watch(call, events, (r: DeltaDiscoveryResponse__Output) => {
    events.onUpdate({
      typeUrl: r.type_url,
      nonce: r.nonce,
      versionInfo: r.system_version_info,
      items: r.resources
        .filter((res) => res.resource)
        .map((res) => ({ any: res.resource!, version: res.version, name: res.name })),
      removed: r.removed_resources,
      fullState: false,
    });
  });
  return {
    protocol: 'delta',
    subscribe(typeUrl, names, known) {
      const before = sent.get(typeUrl);
      if (names === 'wildcard') {
        if (before === 'wildcard') return;
        sent.set(typeUrl, 'wildcard');
        // Legacy wildcard (CDS, LDS): a first request with no names subscribes to everything of the type; other
        // types (VHDS) say "*".
        const all = FULL_STATE_TYPES.has(typeUrl) ? [] : ['*'];
        write({ type_url: typeUrl, resource_names_subscribe: all, initial_resource_versions: { ...known } });
        return;
      }
      const want = new Set(names);
      if (before === undefined || before === 'wildcard') {
        if (want.size === 0) return;
        sent.set(typeUrl, want);
        const initial: Record<string, string> = {};
        for (const n of want) if (known[n] !== undefined) initial[n] = known[n];
        write({ type_url: typeUrl, resource_names_subscribe: [...want].sort(), initial_resource_versions: initial });
        return;
      }
      const add = [...want].filter((n) => !before.has(n)).sort();
      const drop = [...before].filter((n) => !want.has(n)).sort();
      if (add.length === 0 && drop.length === 0) return;
      sent.set(typeUrl, want);
      write({ type_url: typeUrl, resource_names_subscribe: add, resource_names_unsubscribe: drop });
    },
    ack(update) {
      write({ type_url: update.typeUrl, response_nonce: update.nonce });
    },
    nack(update, message) {
      write({ type_url: update.typeUrl, response_nonce: update.nonce, error_detail: { code: INVALID_ARGUMENT, message } });
    },
    close: () => call.cancel(),
  };
}
