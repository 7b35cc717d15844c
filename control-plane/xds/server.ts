// The xDS gRPC server: binds, serves SotW and delta streams (ADS and the per-type CDS/EDS/LDS/RDS services) from the snapshot cache, shuts down gracefully.
import { malformedReason, onFramingError, withMalformedRequestsCaught } from './bad-requests.ts';
import * as grpc from '@grpc/grpc-js';
import {
  type DeltaDiscoveryRequest__Output,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest__Output,
  type DiscoveryResponse,
  grpcDefinitions,
  shortName,
  TYPE_URL,
  type TypeUrl,
} from '../../proto/index.ts';
import type { Snapshot, SnapshotCache } from '../cache/snapshot.ts';
import { DeltaStream } from './delta-stream.ts';
import { withFastDeltaAcks } from './delta-request.ts';
import { withSharedEncoding } from './encode.ts';
import { perTypeResources, perTypeSourceOf } from './config-sources.ts';
import { NodeStreams } from './node-streams.ts';
import { usePooledDecoder } from './request-decoder.ts';
import { withLazyRequestNames } from './request-names.ts';
import { XdsBindError } from './errors.ts';
import { stderrLog, type XdsLog } from './log.ts';
import { logger } from '../log.ts';
import { createXdsMetrics, type XdsMetrics } from './metrics.ts';
import { fetchResponse, SotwStream } from './sotw-stream.ts';
import type { StatusRegistry } from './status.ts';
import { type AdsStream, EMPTY_SCOPE, errorText, resourcesOf, SendBudget, type StreamDeps } from './stream-io.ts';

/** ADS streams one HTTP/2 connection may hold at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
export const MAX_STREAMS_PER_CONNECTION = 100;

export interface XdsServerOptions {
  /** Default 127.0.0.1 (plaintext xDS belongs on loopback or a trusted network). */
  readonly host?: string;
  /** Default 15010; 0 lets the OS pick. */
  readonly port?: number;
  /** Default insecure (plaintext); pass TLS credentials for the 15012 listener. */
  readonly credentials?: grpc.ServerCredentials;
  /** Default: a fresh set in its own Registry (read it back from the returned handle). */
  readonly metrics?: XdsMetrics;
  readonly log?: XdsLog;
  /** A stream that cannot be written for this long is closed with RESOURCE_EXHAUSTED. Default 30 s. */
  readonly backlogLimitMs?: number;
  /** Unflushed response bytes per stream above which the stream holds back and coalesces. Default 8 MiB. */
  readonly maxBufferedBytes?: number;
  /** Unflushed response bytes across all streams above which streams wait their turn. Default 32 MiB; 0: no limit. */
  readonly maxInFlightBytes?: number;
  /** How long close() waits for streams to end before forcing. Default 5 s. */
  readonly shutdownGraceMs?: number;
  /** Mounts more services on the same server (the CertificateService on the TLS port). */
  readonly extraServices?: (server: grpc.Server) => void;
  /** Extra grpc-js server options (keepalive, message sizes). */
  readonly grpcOptions?: grpc.ServerOptions;
}

export interface XdsServerHandle {
  /** `host:port` actually bound. */
  readonly address: string;
  readonly port: number;
  readonly metrics: XdsMetrics;
  /** Number of open streams that sent their node. */
  streams(): number;
  /** Ends every stream with UNAVAILABLE (proxies reconnect elsewhere) and stops the server. */
  close(): Promise<void>;
}

/** SKEIN_DEBUG=fanout: how long a publish takes to reach every stream's socket. */
const fanout = logger('fanout');

/** The per-type services, each carrying one type (Envoy's names: envoy/service/cluster/v3/cds.proto and so on). */
const PER_TYPE_SERVICES = [
  { pkg: 'cluster', service: 'ClusterDiscoveryService', typeUrl: TYPE_URL.cluster, sotw: 'StreamClusters', delta: 'DeltaClusters', fetch: 'FetchClusters' },
  { pkg: 'endpoint', service: 'EndpointDiscoveryService', typeUrl: TYPE_URL.endpoint, sotw: 'StreamEndpoints', delta: 'DeltaEndpoints', fetch: 'FetchEndpoints' },
  { pkg: 'listener', service: 'ListenerDiscoveryService', typeUrl: TYPE_URL.listener, sotw: 'StreamListeners', delta: 'DeltaListeners', fetch: 'FetchListeners' },
  { pkg: 'route', service: 'RouteDiscoveryService', typeUrl: TYPE_URL.route, sotw: 'StreamRoutes', delta: 'DeltaRoutes', fetch: 'FetchRoutes' },
] as const;

type Method = grpc.MethodDefinition<object, object>;

/**
 * A per-type service's definition: its streaming methods are the ADS ones (already wrapped: the same decoders and
 * shared-bytes encoders, as the messages are the same) under the per-type path; Fetch keeps its own, with malformed
 * requests caught.
 */
function perTypeDefinition(
  own: grpc.ServiceDefinition,
  ads: grpc.ServiceDefinition,
  names: (typeof PER_TYPE_SERVICES)[number],
): grpc.ServiceDefinition {
  const method = (name: string): Method => {
    const m = own[name] as Method | undefined;
    if (!m) throw new Error(`${names.service} has no method ${name}`);
    return m;
  };
  const alias = (name: string, adsName: string): Method => {
    const m = method(name);
    const base = ads[adsName] as Method;
    return { ...base, path: m.path, ...(m.originalName !== undefined ? { originalName: m.originalName } : {}) };
  };
  return {
    [names.sotw]: alias(names.sotw, 'StreamAggregatedResources'),
    [names.delta]: alias(names.delta, 'DeltaAggregatedResources'),
    ...withMalformedRequestsCaught({ [names.fetch]: method(names.fetch) }),
  } as grpc.ServiceDefinition;
}

/**
 * Routes each publish to the streams of the scopes it touches. Per-type EDS streams get it after every other stream:
 * the node's CDS streams then already know what they will send, and an EDS stream holds back the CLAs of changed
 * Clusters until those are answered (node-streams.ts).
 */
class Dispatcher {
  private readonly byScope = new Map<string, Set<AdsStream>>();
  private readonly endpointsByScope = new Map<string, Set<AdsStream>>();
  /** Per node id, its open per-type streams (a node counts once in skein_xds_connected_proxies). */
  readonly nodes = new NodeStreams();
  private readonly log: XdsLog;
  private readonly metrics: XdsMetrics;

  constructor(log: XdsLog, metrics: XdsMetrics) {
    this.log = log;
    this.metrics = metrics;
  }

  private groupOf(stream: AdsStream): Map<string, Set<AdsStream>> {
    return stream.only === TYPE_URL.endpoint ? this.endpointsByScope : this.byScope;
  }

  add(stream: AdsStream): void {
    if (stream.scope === undefined) return;
    const group = this.groupOf(stream);
    let set = group.get(stream.scope);
    if (!set) group.set(stream.scope, (set = new Set()));
    set.add(stream);
    if (stream.only === undefined || this.nodes.add(stream)) this.metrics.connectedProxies.inc();
  }

  remove(stream: AdsStream): void {
    if (stream.scope === undefined) return;
    const group = this.groupOf(stream);
    const set = group.get(stream.scope);
    if (!set?.delete(stream)) return;
    if (set.size === 0) group.delete(stream.scope);
    if (stream.only === undefined || this.nodes.remove(stream)) this.metrics.connectedProxies.dec();
  }

  private publishTo(group: Map<string, Set<AdsStream>>, snapshot: Snapshot): void {
    for (const streams of group.values()) {
      for (const stream of streams) {
        try {
          stream.onSnapshot(snapshot);
        } catch (err) {
          // onSnapshot guards itself; this only protects the other streams from a bug there.
          this.log.error('publish to a stream failed', { reason: errorText(err) });
        }
      }
    }
  }

  publish(snapshot: Snapshot): void {
    const t0 = fanout.debugEnabled ? performance.now() : 0;
    this.publishTo(this.byScope, snapshot);
    if (this.endpointsByScope.size > 0) this.publishTo(this.endpointsByScope, snapshot);
    if (fanout.debugEnabled) {
      // Streams flush in the one setImmediate callback (stream-base.ts) queued in the loop above; this one, queued
      // after it, runs after all of them (the sockets get the bytes in the event loop's next turn, when Node's HTTP/2 sessions write).
      setImmediate(() =>
        fanout.debug('publish written', {
          serial: snapshot.serial,
          streams: this.size,
          flushMs: (performance.now() - t0).toFixed(1),
          sinceChangeMs: (performance.now() - snapshot.changedAt).toFixed(1),
        }),
      );
    }
  }

  all(): AdsStream[] {
    return [...this.byScope.values(), ...this.endpointsByScope.values()].flatMap((s) => [...s]);
  }

  get size(): number {
    let n = 0;
    for (const s of this.byScope.values()) n += s.size;
    for (const s of this.endpointsByScope.values()) n += s.size;
    return n;
  }
}

export async function startXdsServer(
  options: XdsServerOptions,
  cache: SnapshotCache,
  status: StatusRegistry,
): Promise<XdsServerHandle> {
  const host = options.host ?? '127.0.0.1';
  const metrics = options.metrics ?? createXdsMetrics();
  const log = options.log ?? stderrLog;
  const dispatcher = new Dispatcher(log, metrics);
  const deps: StreamDeps = {
    cache,
    status,
    metrics,
    log,
    limits: {
      backlogLimitMs: options.backlogLimitMs ?? 30_000,
      maxBufferedBytes: options.maxBufferedBytes ?? 8 * 1024 * 1024,
      budget: options.maxInFlightBytes === 0 ? undefined : new SendBudget(options.maxInFlightBytes ?? 32 * 1024 * 1024),
    },
    nodes: dispatcher.nodes,
    register: (s) => dispatcher.add(s),
    unregister: (s) => dispatcher.remove(s),
  };

  /** A SotW stream: ADS (`only` undefined) or one type's service. */
  const sotw =
    (only?: TypeUrl): grpc.handleBidiStreamingCall<DiscoveryRequest__Output, DiscoveryResponse> =>
    (call) => {
      // SotW ACKs are large (the whole subscription): reassemble them in reused buffers (request-decoder.ts).
      usePooledDecoder(call);
      const stream = new SotwStream(call, deps, only);
      onFramingError(call, 'DiscoveryRequest', (reason) => stream.rejectRequest('too_large', reason, true));
    };
  const delta =
    (only?: TypeUrl): grpc.handleBidiStreamingCall<DeltaDiscoveryRequest__Output, DeltaDiscoveryResponse> =>
    (call) => {
      const stream = new DeltaStream(call, deps, only);
      onFramingError(call, 'DeltaDiscoveryRequest', (reason) => stream.rejectRequest('too_large', reason, true));
    };
  /** Fetch*: one request, one answer with the type's current resources (REST-over-gRPC; no stream, no status). */
  const fetch =
    (only: TypeUrl): grpc.handleUnaryCall<DiscoveryRequest__Output, DiscoveryResponse> =>
    (call, callback) => {
      const req = call.request;
      const service = shortName(only);
      const reject = (kind: 'malformed' | 'no_node' | 'wrong_type', reason: string): void => {
        log.warn('xDS fetch rejected', { peer: call.getPeer(), nodeId: req.node?.id || '(not sent)', service, reason });
        metrics.rejectedRequests.inc({ reason: kind });
        callback({ code: grpc.status.INVALID_ARGUMENT, details: reason });
      };
      const malformed = malformedReason(req);
      if (malformed !== undefined) return reject('malformed', `malformed request: ${malformed}`);
      if (!req.node?.id) return reject('no_node', 'the request must carry node.id');
      if (req.type_url !== '' && req.type_url !== only) {
        return reject('wrong_type', `the ${service} service carries ${only} only; the request asked for ${req.type_url} (use that type's own service)`);
      }
      try {
        const scope = cache.scopeOf(req.node);
        const published = resourcesOf(cache.current().scopes.get(scope) ?? EMPTY_SCOPE, only);
        cache.releaseScope?.(scope);
        // As a per-type SotW stream sends them: EDS/RDS config sources pointing at the per-type services.
        const map = only === TYPE_URL.cluster || only === TYPE_URL.listener ? perTypeResources(only, published, perTypeSourceOf(req.node, 'GRPC')) : published;
        const { anys, version } = fetchResponse(map, only, req.resource_names);
        callback(null, { version_info: version, resources: anys, type_url: only, nonce: '' });
      } catch (err) {
        callback({ code: grpc.status.INTERNAL, details: `xDS fetch failed: ${errorText(err)}` });
      }
    };
  // A proxy holds one ADS stream (a proxyless gRPC client one or two): 100 per connection is plenty, and one client
  // cannot open thousands of streams on a connection, each holding a subscription (a 20 000-stream test took RSS
  // from 100 to 420 MB). Past the limit HTTP/2 makes the client wait for a stream to end.
  const server = new grpc.Server({ 'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION, ...options.grpcOptions });
  const definitions = grpcDefinitions().envoy.service;
  const ads = withMalformedRequestsCaught(withFastDeltaAcks(withLazyRequestNames(withSharedEncoding(definitions.discovery.v3.AggregatedDiscoveryService.service))));
  server.addService(ads, { StreamAggregatedResources: sotw(), DeltaAggregatedResources: delta() });
  // Envoy without ads_config (cds_config, lds_config, EDS/RDS config sources with api_type GRPC or DELTA_GRPC).
  for (const names of PER_TYPE_SERVICES) {
    const own = (definitions[names.pkg].v3 as unknown as Record<string, { service: grpc.ServiceDefinition }>)[names.service];
    if (!own) throw new Error(`proto definitions lack envoy.service.${names.pkg}.v3.${names.service}`);
    server.addService(perTypeDefinition(own.service, ads, names), {
      [names.sotw]: sotw(names.typeUrl),
      [names.delta]: delta(names.typeUrl),
      [names.fetch]: fetch(names.typeUrl),
    });
  }
  options.extraServices?.(server);

  const wanted = `${host.includes(':') ? `[${host}]` : host}:${options.port ?? 15010}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(wanted, options.credentials ?? grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(new XdsBindError(wanted, err.message)) : resolve(bound),
    );
  });
  const unsubscribe = cache.subscribe((snapshot) => dispatcher.publish(snapshot));
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      unsubscribe();
      const streams = [...dispatcher.all()];
      if (streams.length > 0) logger('xds').info('shutting down: closing xDS streams (UNAVAILABLE; proxies reconnect)', { streams: streams.length });
      for (const stream of streams) stream.terminate(grpc.status.UNAVAILABLE, 'control plane shutting down', false, true);
      const timer = setTimeout(() => server.forceShutdown(), options.shutdownGraceMs ?? 5_000);
      timer.unref();
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    return closing;
  };
  return { address, port, metrics, streams: () => dispatcher.size, close };
}
