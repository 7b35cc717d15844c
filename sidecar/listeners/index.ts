// The data plane's interface: createDataPlane(options, registry) → listeners, router and upstream kept in step with MeshConfig.
import type { Registry } from 'prom-client';
import { compose, ClusterManager, mtlsConnector, STREAM_IDLE_TIMEOUT_MS, StreamIdleWatch, timeoutInterceptor } from '../upstream/index.ts';
import { buildInboundIndex, type InboundPolicy, NO_SERVICE } from '../authz/index.ts';
import type { TlsContexts } from '../tls/index.ts';
import type { ClusterStat, Interceptor } from '../upstream/index.ts';
import { RouteTable } from '../router/index.ts';
import { DataPlaneMetrics } from '../telemetry/metrics.ts';
import type { HttpListenerConfig, MeshConfig, RouteTableConfig, TcpListenerConfig } from '../xds/model.ts';
import { logger } from '../log.ts';
import { OutboundListener } from './outbound.ts';
import { InboundListener, L4PipeHandler } from './inbound.ts';
import { workloadGone } from './workload-gone.ts';
import type { InboundHandler } from './inbound.ts';
import { InboundHttpHandler } from './inbound-http.ts';
import { TcpListeners } from './tcp.ts';
import type { TcpListenerStat } from './tcp.ts';

export type { ClusterStat, EndpointStat } from '../upstream/index.ts';
export type { TcpListenerStat } from './tcp.ts';
export type { InboundHandler } from './inbound.ts';
export { PEER_IDENTITY_HEADER } from './inbound-http.ts';
export * from './errors.ts';

const log = logger('listener');

export interface DataPlaneOptions {
  readonly outbound: { readonly host: string; readonly port: number };
  readonly inbound: { readonly host: string; readonly port: number };
  /** Where the app listens (default 127.0.0.1). */
  readonly appHost?: string;
  /** The app's ports; inbound connections for any other port are refused. */
  readonly appPorts: readonly number[];
  readonly namespace: string;
  /** This pod's IP: the PROXY v2 source on connections to peers. */
  readonly podIp: string;
  /** Default 10 s; a listener's request_headers_timeout overrides it. */
  readonly requestHeadersTimeoutMs?: number;
  /** Default 60 (Envoy's max_request_headers_kb default). */
  readonly maxRequestHeadersKb?: number;
  /** How long an outbound request that arrives before the first config waits for it (default 10 s), then 503 no_config. */
  readonly configWaitMs?: number;
  /** Extra request-path wrappers (retry, breaker, tracing), inside the route timeout (which bounds them all). */
  readonly interceptors?: readonly Interceptor[];
  /** Replaces the inbound L4 pipe used when no authorization policy applies. */
  readonly inboundHandler?: InboundHandler;
  /**
   * Mutual TLS between sidecars: outbound connections to peer sidecars originate mTLS, inbound accepts it and
   * enforces each Service's mTLS mode. Absent (`--mtls off`): plaintext everywhere, policies still evaluated.
   */
  readonly tls?: TlsContexts;
}

export interface DataPlane {
  update(mesh: MeshConfig): void;
  start(): Promise<void>;
  /** Started, and the outbound route table the config names is present. */
  ready(): boolean;
  clusterStats(): ClusterStat[];
  tcpListenerStats(): TcpListenerStat[];
  /** Bound ports (useful when options asked for port 0). */
  ports(): { outbound: number; inbound: number };
  close(drainMs: number): Promise<void>;
}

const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;

export function createDataPlane(options: DataPlaneOptions, registry: Registry): DataPlane {
  const metrics = new DataPlaneMetrics(registry);
  const connector = options.tls === undefined ? undefined : mtlsConnector(options.tls, metrics.tlsHandshakes);
  const manager = new ClusterManager(options.podIp, metrics, connector);
  const idle = new StreamIdleWatch();
  const dispatch = compose(manager.dispatch, idle.interceptor, timeoutInterceptor, ...(options.interceptors ?? []));
  const outbound = new OutboundListener(
    {
      host: options.outbound.host,
      port: options.outbound.port,
      requestHeadersTimeoutMs: options.requestHeadersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
      maxRequestHeadersKb: options.maxRequestHeadersKb ?? 60,
      ...(options.configWaitMs !== undefined ? { configWaitMs: options.configWaitMs } : {}),
      podIp: options.podIp,
    },
    manager,
    dispatch,
    metrics,
  );
  const appHost = options.appHost ?? '127.0.0.1';
  const pipe = options.inboundHandler ?? new L4PipeHandler(appHost, metrics);
  let inboundIndex: ReadonlyMap<number, InboundPolicy> = new Map();
  const policyFor = (port: number): InboundPolicy => inboundIndex.get(port) ?? NO_SERVICE;
  const inbound = new InboundListener(
    { host: options.inbound.host, port: options.inbound.port, appPorts: options.appPorts },
    pipe,
    {
      tls: options.tls,
      policyFor,
      metrics,
      http: new InboundHttpHandler({
        appHost,
        policyFor,
        metrics,
        maxRequestHeadersKb: options.maxRequestHeadersKb,
        headersTimeoutMs: options.requestHeadersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
      }),
    },
  );
  const tcp = new TcpListeners(options.outbound.host, manager, metrics, options.podIp, options.namespace, options.appPorts);
  let started = false;
  let mesh: MeshConfig | undefined;
  let tableConfig: RouteTableConfig | undefined;
  let pendingTcp: readonly TcpListenerConfig[] = [];

  function applyTcp(): void {
    if (!started) return;
    void tcp.update(pendingTcp).catch((err: unknown) => log.error('TCP listeners update failed', { error: String(err) }));
  }

  return {
    update(next: MeshConfig): void {
      mesh = next;
      // Clusters first, so a route never names a cluster the manager has not seen.
      manager.update(next.clusters);
      inboundIndex = buildInboundIndex(next, options.podIp);
      inbound.recheck();
      let http: HttpListenerConfig | undefined;
      const tcpConfigs: TcpListenerConfig[] = [];
      for (const l of next.listeners.values()) {
        if (l.kind === 'tcp') tcpConfigs.push(l);
        else if (http === undefined || l.name === 'virtualOutbound') http = l;
      }
      const t = http === undefined ? undefined : (http.inlineRoutes ?? next.routes.get(http.routeConfigName));
      if (t !== tableConfig) {
        tableConfig = t;
        outbound.table = t === undefined ? undefined : new RouteTable(t);
      }
      outbound.setHeadersTimeout(http?.requestHeadersTimeoutMs ?? options.requestHeadersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS);
      idle.setTimeout(http?.streamIdleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS);
      outbound.maxRequestHeadersKb = http?.maxRequestHeadersKb ?? options.maxRequestHeadersKb ?? 60;
      outbound.configured();
      pendingTcp = tcpConfigs;
      applyTcp();
    },

    async start(): Promise<void> {
      await outbound.listen();
      await inbound.listen();
      started = true;
      applyTcp();
      log.info('data plane listening', { outbound: outbound.port, inbound: inbound.port });
    },

    ready(): boolean {
      if (!started || mesh === undefined) return false;
      for (const l of mesh.listeners.values()) if (l.kind === 'http' && tableConfig === undefined) return false;
      return true;
    },

    clusterStats: () => manager.stats(),
    tcpListenerStats: () => tcp.stats(),
    ports: () => ({ outbound: outbound.port, inbound: inbound.port }),

    async close(drainMs: number): Promise<void> {
      const deadline = Date.now() + drainMs;
      const inboundClosed = inbound.close(drainMs);
      // The workload may still call out while it shuts down (it got SIGTERM too): the outbound side stays up until
      // the app stops listening and its connections to us have closed, or the drain period ends (see workload-gone.ts).
      // The last part of the period (up to 1 s) is kept for closing it gracefully: idle connections first, then
      // `connection: close` (HTTP/2: GOAWAY) on what is in flight.
      const grace = Math.min(1000, drainMs / 2);
      const quietForMs = (): number =>
        outbound.connections + tcp.connections > 0 ? 0 : performance.now() - Math.max(outbound.lastConnectionAt, tcp.lastConnectionAt);
      await workloadGone({ appHost, appPorts: options.appPorts, quietForMs, deadline: deadline - grace });
      const left = Math.max(0, deadline - Date.now());
      await Promise.all([outbound.close(left), tcp.close(left), inboundClosed]);
      idle.close();
      await manager.close(Math.min(drainMs, 1000));
    },
  };
}
