// The control plane's admin HTTP server on loopback: health, readiness, Prometheus metrics, and debug views.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { SnapshotCache } from '../cache/snapshot.ts';
import type { StatusRegistry } from '../xds/index.ts';
import { configDump } from './config-dump.ts';

export interface AdminServerOptions {
  /** Default 127.0.0.1: the admin port is never exposed beyond the host by default. */
  readonly host?: string;
  /** Default 15014; 0 lets the OS pick. */
  readonly port?: number;
  readonly status: StatusRegistry;
  /** The snapshot cache, once there is one (the admin server starts before the registry has loaded). */
  readonly cache: () => SnapshotCache | undefined;
  /**
   * Registries to expose on /metrics (the xDS server's, and others); process metrics are added. Read on each scrape,
   * so a registry made after the admin server started (the xDS server's) is exposed from then on.
   */
  readonly registries: () => readonly Registry[];
  /** The certificate last issued to a proxy, by node id (shown by `skein proxy-status`). */
  readonly certificateOf?: (nodeId: string) => object | undefined;
  /** Why the control plane is not ready yet, or undefined once it is (see `snapshotReadiness`). */
  readonly readiness: () => string | undefined;
}

export interface AdminServerHandle {
  readonly address: string;
  readonly port: number;
  /** `http://host:port`, what `skein proxy-status --control-plane` takes. */
  readonly url: string;
  close(): Promise<void>;
}

export class AdminBindError extends Error {
  readonly code = 'SKEIN_ADMIN_BIND';
  constructor(address: string, cause: string) {
    super(`cannot listen for the admin server on ${address}: ${cause}; free the port or pick another with --admin-address`);
    this.name = 'AdminBindError';
  }
}

/** Ready once the registry loaded and the cache published a first snapshot (serial ≥ 1). */
export function snapshotReadiness(
  registryLoaded: () => boolean,
  cacheOf: () => SnapshotCache | undefined,
  serving: () => boolean = () => true,
): () => string | undefined {
  return () => {
    if (!registryLoaded()) return 'registry has not loaded its first state yet';
    const cache = cacheOf();
    if (cache === undefined) return 'building the first xDS snapshot';
    if (!serving()) return 'opening the xDS ports';
    try {
      if (cache.current().serial < 1) return 'building the first xDS snapshot';
    } catch (err) {
      return `no xDS snapshot available: ${err instanceof Error ? err.message : String(err)}`;
    }
    return undefined;
  };
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

const json = (res: ServerResponse, status: number, value: unknown): void =>
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`);

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServerHandle> {
  const processRegistry = new Registry();
  collectDefaultMetrics({ register: processRegistry });
  let merged: { readonly from: readonly Registry[]; readonly registry: Registry } | undefined;
  const metrics = (): Registry => {
    const from = options.registries();
    if (merged === undefined || merged.from.length !== from.length || merged.from.some((r, i) => r !== from[i])) {
      merged = { from: [...from], registry: Registry.merge([...from, processRegistry]) };
    }
    return merged.registry;
  };

  const routes: Record<string, (url: URL, res: ServerResponse) => void | Promise<void>> = {
    '/healthz': (_url, res) => send(res, 200, 'text/plain; charset=utf-8', 'ok\n'),
    '/readyz': (_url, res) => {
      const reason = options.readiness();
      if (reason === undefined) send(res, 200, 'text/plain; charset=utf-8', 'ready\n');
      else send(res, 503, 'text/plain; charset=utf-8', `not ready: ${reason}\n`);
    },
    '/metrics': async (_url, res) => {
      const registry = metrics();
      send(res, 200, registry.contentType, await registry.metrics());
    },
    '/debug/proxy-status': (url, res) => {
      const nodeId = url.searchParams.get('node') ?? undefined;
      const resources = url.searchParams.get('resources') === '1' || url.searchParams.get('resources') === 'true';
      const proxies = options.status.list({ ...(nodeId !== undefined ? { nodeId } : {}), resources });
      const certificateOf = options.certificateOf;
      json(res, 200, {
        // What this CA issued since it started; else what the proxy reported when it connected (after a restart).
        proxies: proxies.map((p) => {
          const certificate = certificateOf?.(p.nodeId) ?? (p.certNotAfter !== undefined ? { notAfter: p.certNotAfter } : undefined);
          return certificate === undefined ? p : { ...p, certificate };
        }),
      });
    },
    '/debug/config_dump': (url, res) => {
      const cache = options.cache();
      if (cache === undefined) {
        json(res, 503, { error: 'no snapshot yet: the registry is loading or the first snapshot is building' });
        return;
      }
      const result = configDump(cache.current(), url.searchParams);
      if (result.ok) json(res, 200, result.dump);
      else json(res, result.status, { error: result.error, scopes: result.scopes });
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = routes[url.pathname];
    if (!route) {
      json(res, 404, { error: `no such endpoint ${url.pathname}`, endpoints: Object.keys(routes) });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      json(res, 405, { error: `${req.method} is not allowed; use GET` });
      return;
    }
    await route(url, res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  });
  const host = options.host ?? '127.0.0.1';
  const wanted = `${host}:${options.port ?? 15014}`;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new AdminBindError(wanted, err.message)));
    server.listen(options.port ?? 15014, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    address: `${hostPart}:${port}`,
    port,
    url: `http://${hostPart}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
