// The ADS gRPC server: binds, serves SotW and delta streams from the snapshot cache, shuts down gracefully.
import { onFramingError, withMalformedRequestsCaught } from './bad-requests.ts';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../../proto/index.ts';
import type { AggregatedDiscoveryServiceHandlers } from '../../proto/index.ts';
import type { Snapshot, SnapshotCache } from '../cache/snapshot.ts';
import { DeltaStream } from './delta-stream.ts';
import { withFastDeltaAcks } from './delta-request.ts';
import { withSharedEncoding } from './encode.ts';
import { usePooledDecoder } from './request-decoder.ts';
import { withLazyRequestNames } from './request-names.ts';
import { XdsBindError } from './errors.ts';
import { stderrLog, type XdsLog } from './log.ts';
import { logger } from '../log.ts';
import { createXdsMetrics, type XdsMetrics } from './metrics.ts';
import { SotwStream } from './sotw-stream.ts';
import type { StatusRegistry } from './status.ts';
import { type AdsStream, errorText, SendBudget, type StreamDeps } from './stream-io.ts';

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

/** Routes each publish to the streams of the scopes it touches. */
class Dispatcher {
  private readonly byScope = new Map<string, Set<AdsStream>>();
  private readonly log: XdsLog;

  constructor(log: XdsLog) {
    this.log = log;
  }

  add(stream: AdsStream): void {
    if (stream.scope === undefined) return;
    let set = this.byScope.get(stream.scope);
    if (!set) this.byScope.set(stream.scope, (set = new Set()));
    set.add(stream);
  }

  remove(stream: AdsStream): void {
    if (stream.scope === undefined) return;
    const set = this.byScope.get(stream.scope);
    set?.delete(stream);
    if (set?.size === 0) this.byScope.delete(stream.scope);
  }

  publish(snapshot: Snapshot): void {
    const t0 = fanout.debugEnabled ? performance.now() : 0;
    for (const streams of this.byScope.values()) {
      for (const stream of streams) {
        try {
          stream.onSnapshot(snapshot);
        } catch (err) {
          // onSnapshot guards itself; this only protects the other streams from a bug there.
          this.log.error('publish to a stream failed', { reason: errorText(err) });
        }
      }
    }
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
    return [...this.byScope.values()].flatMap((s) => [...s]);
  }

  get size(): number {
    let n = 0;
    for (const s of this.byScope.values()) n += s.size;
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
  const dispatcher = new Dispatcher(log);
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
    register: (s) => dispatcher.add(s),
    unregister: (s) => dispatcher.remove(s),
  };

  const handlers: AggregatedDiscoveryServiceHandlers = {
    StreamAggregatedResources: (call) => {
      // SotW ACKs are large (the whole subscription): reassemble them in reused buffers (request-decoder.ts).
      usePooledDecoder(call);
      const stream = new SotwStream(call, deps);
      onFramingError(call, 'DiscoveryRequest', (reason) => stream.rejectRequest('too_large', reason, true));
    },
    DeltaAggregatedResources: (call) => {
      const stream = new DeltaStream(call, deps);
      onFramingError(call, 'DeltaDiscoveryRequest', (reason) => stream.rejectRequest('too_large', reason, true));
    },
  };
  // A proxy holds one ADS stream (a proxyless gRPC client one or two): 100 per connection is plenty, and one client
  // cannot open thousands of streams on a connection, each holding a subscription (a 20 000-stream test took RSS
  // from 100 to 420 MB). Past the limit HTTP/2 makes the client wait for a stream to end.
  const server = new grpc.Server({ 'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION, ...options.grpcOptions });
  const service = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service;
  server.addService(withMalformedRequestsCaught(withFastDeltaAcks(withLazyRequestNames(withSharedEncoding(service)))), handlers);
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
