// The sidecar's ADS client: delta first (SotW fallback), CDS→EDS→LDS→RDS(→VHDS) warming, ACK/NACK, last good config, backoff.
import * as grpc from '@grpc/grpc-js';
import { adsClientConstructor, kindOf, type Node, shortName, TYPE_URL, type TypeUrl, VHDS_FEATURE } from '../../proto/index.ts';
import { XdsResourceInvalidError, XdsStreamError } from '../errors.ts';
import { logger } from '../log.ts';
import { type AdsStream, type IncomingUpdate, openDeltaStream, openSotwStream } from './ads-stream.ts';
import { Backoff, type BackoffOptions, DEFAULT_BACKOFF } from './backoff.ts';
import type { XdsMetrics } from './metrics.ts';
import type { MeshConfig } from './model.ts';
import { type DecodedResource, decodeResources } from './resources.ts';
import { ResourceStore, type Warmth } from './store.ts';

/**
 * grpc-js reports "Protocol error" when what answered does not speak HTTP/2 at all: most often the control plane's
 * admin port (HTTP/1.1) given for its xDS port.
 */
const NOT_GRPC_HINT =
  'the address answered, but not with HTTP/2 (gRPC): is it an HTTP/1.1 port such as the control plane admin port (15014)? ' +
  '--control-plane takes the xDS port (15010 by default)';

const log = logger('xds');

export interface XdsClientOptions {
  /** The control plane's ADS address, `host:port`. */
  readonly server: string;
  readonly node: Node;
  /** Plaintext unless given. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Channel options to add (a TLS channel's target name override). */
  readonly channelOptions?: grpc.ChannelOptions;
  /** Called with every new MeshConfig (never concurrently; exceptions are logged). */
  readonly onConfig: (mesh: MeshConfig) => void;
  /** Publish what is there after this long even if not warm (default 5000 ms). */
  readonly warmingTimeoutMs?: number;
  readonly backoff?: Partial<BackoffOptions>;
  /** 'auto' (default): delta, falling back to SotW for good when the server answers UNIMPLEMENTED. */
  readonly protocol?: 'auto' | 'delta' | 'sotw';
  readonly metrics?: XdsMetrics;
}

export interface XdsNack {
  readonly typeUrl: string;
  readonly text: string;
  readonly at: string;
}

/** What /ready and /config_dump show about the client. */
export interface XdsClientState {
  readonly server: string;
  readonly connected: boolean;
  readonly protocol: 'delta' | 'sotw';
  readonly lastError?: string;
  readonly lastNack?: XdsNack;
  /** Per type URL, the version last ACKed. */
  readonly versions: Readonly<Record<string, string>>;
  readonly warming: Warmth;
  /** True once a MeshConfig has been handed to onConfig. */
  readonly published: boolean;
  readonly lastPublishedAt?: string;
}

const TYPES: readonly TypeUrl[] = [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route, TYPE_URL.virtualHost];
const STATUS_NAME = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k])) as Record<number, string>;

export class XdsClient {
  private readonly options: XdsClientOptions;
  private readonly grpcClient;
  private readonly store = new ResourceStore();
  private readonly backoff: Backoff;
  private protocol: 'delta' | 'sotw';
  private stream: AdsStream | undefined;
  private streamStartedAt = 0;
  private streamsOpened = 0;
  private connected = false;
  private stopped = true;
  private lastError: string | undefined;
  private lastNack: XdsNack | undefined;
  private readonly versions: Record<string, string> = {};
  private dirty = false;
  private mesh: MeshConfig | undefined;
  private lastPublishedAt: string | undefined;
  private warmTimer: NodeJS.Timeout | undefined;
  private readonly gaveUpOn = new Set<string>();
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(options: XdsClientOptions) {
    this.options = options;
    this.protocol = options.protocol === 'sotw' ? 'sotw' : 'delta';
    this.backoff = new Backoff(options.backoff);
    const b = { ...DEFAULT_BACKOFF, ...options.backoff };
    const Ads = adsClientConstructor();
    this.grpcClient = new Ads(options.server, options.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': Math.max(b.baseMs, 10),
      'grpc.max_reconnect_backoff_ms': b.capMs,
      'grpc.keepalive_time_ms': 30_000,
      ...options.channelOptions,
    });
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  /** Closes the stream and the channel; the last config stays available through current(). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.warmTimer);
    this.stream?.close();
    this.stream = undefined;
    this.setConnected(false);
    this.grpcClient.close();
  }

  /** The last MeshConfig published, if any. */
  current(): MeshConfig | undefined {
    return this.mesh;
  }

  state(): XdsClientState {
    return {
      server: this.options.server,
      connected: this.connected,
      protocol: this.protocol,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.lastNack ? { lastNack: this.lastNack } : {}),
      versions: { ...this.versions },
      warming: this.store.warmth(),
      published: this.mesh !== undefined,
      ...(this.lastPublishedAt ? { lastPublishedAt: this.lastPublishedAt } : {}),
    };
  }

  private setConnected(up: boolean): void {
    this.connected = up;
    this.options.metrics?.connected.set(up ? 1 : 0);
  }

  private connect(): void {
    if (this.stopped) return;
    this.streamStartedAt = Date.now();
    if (this.streamsOpened++ > 0) this.options.metrics?.reconnects.inc();
    const open = this.protocol === 'delta' ? openDeltaStream : openSotwStream;
    log.debug('opening ADS stream', { server: this.options.server, protocol: this.protocol });
    const stream: AdsStream = open(
      this.grpcClient,
      this.protocol === 'delta' ? withVhds(this.options.node) : this.options.node,
      {
        onOpen: () => {
          if (this.stream !== stream) return;
          this.setConnected(true);
          log.info('ADS stream open', { server: this.options.server, protocol: this.protocol });
        },
        onUpdate: (update) => {
          if (this.stream === stream) this.handleUpdate(stream, update);
        },
        onClose: (code, details) => {
          if (this.stream === stream) this.handleClose(code, details);
        },
      },
      this.versions,
    );
    this.stream = stream;
    this.syncSubscriptions();
  }

  private handleClose(code: number, details: string): void {
    this.stream = undefined;
    this.setConnected(false);
    if (this.stopped) return;
    if (code === grpc.status.UNIMPLEMENTED && this.protocol === 'delta' && (this.options.protocol ?? 'auto') === 'auto') {
      log.info('control plane does not serve delta xDS; using state of the world', { server: this.options.server });
      this.protocol = 'sotw';
      this.connect();
      return;
    }
    const err = new XdsStreamError(`${STATUS_NAME[code] ?? code}: ${details}`);
    this.lastError = err.message;
    this.backoff.streamEnded(Date.now() - this.streamStartedAt);
    const delay = this.backoff.next();
    log.warn('ADS stream closed; reconnecting', {
      code: err.code,
      error: err.message,
      server: this.options.server,
      delayMs: delay,
      ...(/Protocol error/.test(details) ? { hint: NOT_GRPC_HINT } : {}),
    });
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
    this.reconnectTimer.unref();
  }

  /** Tells the server what this sidecar wants: all clusters and listeners, and the EDS/RDS names they point at. */
  private syncSubscriptions(): void {
    const s = this.stream;
    if (!s) return;
    const store = this.store;
    s.subscribe(TYPE_URL.cluster, 'wildcard', store.versionsOf(TYPE_URL.cluster));
    s.subscribe(TYPE_URL.endpoint, [...store.edsNames()], store.versionsOf(TYPE_URL.endpoint));
    s.subscribe(TYPE_URL.listener, 'wildcard', store.versionsOf(TYPE_URL.listener));
    s.subscribe(TYPE_URL.route, [...store.rdsNames()], store.versionsOf(TYPE_URL.route));
    // VHDS (delta only: the node declares it there): every VirtualHost, once a route table says they come that way.
    if (s.protocol === 'delta' && store.wantsVhds()) s.subscribe(TYPE_URL.virtualHost, 'wildcard', store.versionsOf(TYPE_URL.virtualHost));
  }

  private handleUpdate(stream: AdsStream, update: IncomingUpdate): void {
    this.setConnected(true);
    const typeUrl = update.typeUrl as TypeUrl;
    const type = shortName(update.typeUrl);
    if (!kindOf(update.typeUrl) || !TYPES.includes(typeUrl)) {
      this.reject(stream, update, [`type_url ${JSON.stringify(update.typeUrl)} is not served to the sidecar`]);
      return;
    }
    const decoded = decodeResources(typeUrl, update.items);
    if (typeUrl === TYPE_URL.virtualHost && decoded.errors.length === 0) {
      decoded.errors.push(...this.store.checkVirtualHosts(decoded.resources as DecodedResource<typeof TYPE_URL.virtualHost>[], update.removed));
    }
    if (decoded.errors.length > 0) {
      this.reject(stream, update, decoded.errors);
      return;
    }
    this.store.apply(typeUrl, decoded.resources, update.removed, update.fullState);
    this.versions[typeUrl] = update.versionInfo || this.store.digest(typeUrl);
    stream.ack(update);
    this.options.metrics?.updates.inc({ type });
    log.debug('accepted', { type, version: this.versions[typeUrl], resources: decoded.resources.length, removed: update.removed.length });
    this.syncSubscriptions();
    this.dirty = true;
    this.maybePublish();
  }

  private reject(stream: AdsStream, update: IncomingUpdate, errors: readonly string[]): void {
    const type = shortName(update.typeUrl);
    const err = new XdsResourceInvalidError(errors);
    const text = errors.join('\n');
    this.lastNack = { typeUrl: update.typeUrl, text, at: new Date().toISOString() };
    this.options.metrics?.nacks.inc({ type });
    log.warn('rejected xDS response; keeping the last good config', { code: err.code, type, nonce: update.nonce, errors });
    stream.nack(update, text);
  }

  private maybePublish(): void {
    if (!this.dirty || this.stopped) return;
    const missing = this.store.warmth().missing;
    // Items already waited for (and published without) do not hold back later updates.
    for (const m of this.gaveUpOn) if (!missing.includes(m)) this.gaveUpOn.delete(m);
    if (missing.some((m) => !this.gaveUpOn.has(m))) {
      if (!this.warmTimer) {
        this.warmTimer = setTimeout(() => {
          this.warmTimer = undefined;
          const { missing: still } = this.store.warmth();
          if (still.length) log.warn('warming timed out; publishing without', { missing: still });
          for (const m of still) this.gaveUpOn.add(m);
          this.maybePublish();
        }, this.options.warmingTimeoutMs ?? 5000);
        this.warmTimer.unref();
      }
      return;
    }
    clearTimeout(this.warmTimer);
    this.warmTimer = undefined;
    this.dirty = false;
    this.mesh = this.store.build(this.versions);
    this.lastPublishedAt = new Date().toISOString();
    try {
      this.options.onConfig(this.mesh);
    } catch (err) {
      log.error('applying the new config failed', { error: (err as Error).stack ?? String(err) });
    }
  }
}

/**
 * The node as a delta stream sends it: declaring VHDS (a control plane that serves it then sends route tables with
 * `vhds` and each virtual host as a resource; one that does not ignores it). A state-of-the-world stream never does.
 */
function withVhds(node: Node): Node {
  const features = node.client_features ?? [];
  return features.includes(VHDS_FEATURE) ? node : { ...node, client_features: [...features, VHDS_FEATURE] };
}
