// The sidecar's admin HTTP server: /ready, /healthz, /stats/prometheus, /config_dump, /clusters (loopback by default).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { nodeHttp } from '../builtins.ts';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { AdminListenError } from '../errors.ts';
import type { XdsClientState } from '../xds/client.ts';
import type { MeshConfig } from '../xds/model.ts';

/** One endpoint as /clusters shows it; the data path fills the counters it keeps. */
export interface EndpointStats {
  readonly address: string;
  readonly port: number;
  readonly health: string;
  readonly weight: number;
  readonly inboundPort?: number | undefined;
  /** Requests in flight. */
  readonly active?: number;
  readonly connections?: number;
  /** The load balancer's latency estimate (peak EWMA), in ms. */
  readonly latencyMs?: number;
  readonly total?: number;
  readonly failed?: number;
  /** Ms until failure accrual lets the load balancer choose the endpoint again (absent or 0: it may). */
  readonly ejectedMs?: number;
}

export interface ClusterStats {
  readonly name: string;
  readonly lbPolicy: string;
  readonly protocol?: string;
  readonly version?: string;
  readonly endpointsVersion?: string;
  readonly endpoints: readonly EndpointStats[];
  /** Removed endpoints still finishing in-flight work. */
  readonly draining?: number;
}

/** Supplied by the data path: a snapshot of every cluster's endpoints and their counters. */
export type ClusterStatsProvider = () => readonly ClusterStats[];

export interface Readiness {
  readonly ready: boolean;
  /** Why not (shown in the 503 body), or what is up. */
  readonly reason: string;
}

/** Ready once the first MeshConfig was applied and the listeners are up; otherwise says what is missing. */
export function readinessOf(xds: XdsClientState, dataPlaneReady: boolean, draining = false): Readiness {
  if (draining) return { ready: false, reason: 'draining: the sidecar is shutting down' };
  if (!xds.published) {
    const conn = xds.connected
      ? `connected to ${xds.server}, waiting for ${xds.warming.missing.join(', ') || 'the first response'}`
      : `not connected to the control plane at ${xds.server}${xds.lastError ? ` (${xds.lastError})` : ''}`;
    return { ready: false, reason: `no config from the control plane yet: ${conn}` };
  }
  if (!dataPlaneReady) return { ready: false, reason: 'config received but the listeners are not serving yet' };
  return { ready: true, reason: 'ready' };
}

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly readiness: () => Readiness;
  readonly xdsState: () => XdsClientState;
  readonly mesh: () => MeshConfig | undefined;
  readonly clusterStats: ClusterStatsProvider;
  /** Extra sections for /config_dump (e.g. the node, TCP listener state). */
  readonly dumpExtras?: () => Record<string, unknown>;
  /** POST /quitquitquit: drain and exit, as SIGTERM does (Envoy's admin and Istio's agent have it; Jobs use it). */
  readonly quit?: () => void;
  /**
   * While the sidecar is starting (waiting for its certificate), what it waits for: /ready and every page that needs
   * the running sidecar answer 503 with it; /healthz, /stats/prometheus and /quitquitquit work. Undefined once running.
   */
  readonly starting?: () => string | undefined;
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const json = (res: ServerResponse, status: number, value: unknown) =>
  send(res, status, `${JSON.stringify(value, null, 2)}\n`, 'application/json');

/** The last MeshConfig and the xDS client's state as one JSON document. */
export function configDump(state: XdsClientState, mesh: MeshConfig | undefined, extras: Record<string, unknown> = {}): object {
  return {
    xds: {
      server: state.server,
      connected: state.connected,
      protocol: state.protocol,
      versions: state.versions,
      lastError: state.lastError ?? null,
      lastNack: state.lastNack ?? null,
      warming: state.warming,
      lastPublishedAt: state.lastPublishedAt ?? null,
    },
    ...extras,
    clusters: mesh ? [...mesh.clusters.values()] : [],
    listeners: mesh ? [...mesh.listeners.values()] : [],
    routes: mesh ? [...mesh.routes.values()] : [],
  };
}

/** Envoy-style text: one `cluster::address:port::field::value` line per endpoint field. */
export function clustersText(stats: readonly ClusterStats[]): string {
  const lines: string[] = [];
  for (const c of stats) {
    lines.push(`${c.name}::lb_policy::${c.lbPolicy}`);
    if (c.draining) lines.push(`${c.name}::draining_endpoints::${c.draining}`);
    for (const e of c.endpoints) {
      const id = `${c.name}::${e.address}:${e.port}`;
      // Envoy's flag for an outlier-ejected host, in place of `healthy` (other EDS states stay and get it appended).
      const flags = e.ejectedMs ? `${e.health === 'healthy' ? '' : e.health}/failed_outlier_check` : e.health;
      lines.push(`${id}::health_flags::${flags}`, `${id}::weight::${e.weight}`);
      if (e.ejectedMs) lines.push(`${id}::ejected_ms::${Math.round(e.ejectedMs)}`);
      if (e.inboundPort !== undefined) lines.push(`${id}::inbound_port::${e.inboundPort}`);
      if (e.active !== undefined) lines.push(`${id}::rq_active::${e.active}`);
      if (e.connections !== undefined) lines.push(`${id}::cx_active::${e.connections}`);
      if (e.total !== undefined) lines.push(`${id}::rq_total::${e.total}`);
      if (e.failed !== undefined) lines.push(`${id}::rq_error::${e.failed}`);
      if (e.latencyMs !== undefined) lines.push(`${id}::latency_ewma_ms::${Math.round(e.latencyMs * 1000) / 1000}`);
    }
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

export class AdminServer {
  private readonly options: AdminServerOptions;
  private readonly server: Server;

  constructor(options: AdminServerOptions) {
    this.options = options;
    this.server = nodeHttp.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, `admin: ${(err as Error).message}\n`);
        else res.destroy();
      });
    });
  }

  /** The bound port (after start). */
  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const address = `${this.options.host}:${this.options.port}`;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new AdminListenError(address, err));
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (url.pathname === '/quitquitquit' && this.options.quit !== undefined) {
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        send(res, 405, 'admin: /quitquitquit takes POST\n');
        return;
      }
      send(res, 200, 'OK: draining, then exiting\n');
      this.options.quit();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'admin: only GET\n');
      return;
    }
    const o = this.options;
    const starting = o.starting?.();
    if (starting !== undefined && url.pathname !== '/healthz' && url.pathname !== '/stats/prometheus') {
      send(res, 503, `${url.pathname === '/ready' ? 'not ready' : 'the sidecar is starting'}: ${starting}\n`);
      return;
    }
    switch (url.pathname) {
      case '/healthz':
        send(res, 200, 'ok\n');
        return;
      case '/ready': {
        const r = o.readiness();
        send(res, r.ready ? 200 : 503, `${r.ready ? 'ready' : `not ready: ${r.reason}`}\n`);
        return;
      }
      case '/stats/prometheus':
        send(res, 200, await o.registry.metrics(), o.registry.contentType);
        return;
      case '/config_dump':
        json(res, 200, configDump(o.xdsState(), o.mesh(), o.dumpExtras?.() ?? {}));
        return;
      case '/clusters': {
        const stats = o.clusterStats();
        if (url.searchParams.get('format') === 'json') json(res, 200, { clusters: stats });
        else send(res, 200, clustersText(stats));
        return;
      }
      case '/':
        send(res, 200, 'skein sidecar admin: /ready /healthz /stats/prometheus /config_dump /clusters[?format=json], POST /quitquitquit\n');
        return;
      default:
        send(res, 404, `admin: no page ${url.pathname}; try /\n`);
    }
  }
}
