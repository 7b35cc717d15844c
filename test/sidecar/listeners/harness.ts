// Test harness: MeshConfig builders, real app servers and a client/server sidecar pair on OS-chosen ports.
import http from 'node:http';
import net from 'node:net';
import { Registry } from 'prom-client';
import { createDataPlane } from '../../../sidecar/listeners/index.ts';
import type { DataPlane } from '../../../sidecar/listeners/index.ts';
import type {
  ClusterConfig,
  EndpointConfig,
  ListenerConfig,
  MeshConfig,
  RouteConfig,
  RouteTableConfig,
  VirtualHostConfig,
} from '../../../sidecar/xds/model.ts';

export function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve) => server.listen(0, host, () => resolve((server.address() as net.AddressInfo).port)));
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => resolve());
  });
}

/** A port free right now (bound then released). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  const p = await listen(s);
  await closeServer(s);
  return p;
}

/** An HTTP app answering `<name> <method> <url> host=<host>` and echoing bodies; counts its TCP connections. */
export async function startApp(name: string): Promise<{ server: http.Server; port: number; connections: () => number }> {
  let conns = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/slow') {
        setTimeout(() => res.end('slow'), 2000);
        return;
      }
      if (req.url === '/reset') {
        req.socket.destroy();
        return;
      }
      const body = Buffer.concat(chunks);
      res.setHeader('x-app', name);
      if (body.length > 0) res.end(body);
      else res.end(`${name} ${req.method} ${req.url} host=${req.headers.host}`);
    });
  });
  server.on('connection', () => conns++);
  const port = await listen(server);
  return { server, port, connections: () => conns };
}

export function endpoint(port: number, inboundPort?: number, extra: Partial<EndpointConfig> = {}): EndpointConfig {
  return { address: '127.0.0.1', port, weight: 1, health: 'healthy', inboundPort, ...extra };
}

export function cluster(name: string, endpoints: EndpointConfig[], extra: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name,
    version: '1',
    kind: 'eds',
    lbPolicy: 'round-robin',
    connectTimeoutMs: 1000,
    protocol: 'http1',
    endpoints,
    endpointsVersion: '1',
    ...extra,
  };
}

export function route(cluster: string | Array<{ cluster: string; weight: number }>, extra: Partial<RouteConfig> = {}): RouteConfig {
  const targets = typeof cluster === 'string' ? [{ cluster, weight: 1 }] : cluster;
  return {
    name: 'r',
    path: { kind: 'prefix', value: '/' },
    caseSensitive: true,
    headers: [],
    action: { kind: 'forward', targets, totalWeight: targets.reduce((a, t) => a + t.weight, 0) },
    ...extra,
  };
}

/** The domains the control plane emits for a Service port (default port: also without the port). */
export function domains(name: string, ns: string, ip: string, port: number, defaultPort: boolean): string[] {
  const names = [`${name}.${ns}.svc.cluster.local`, `${name}.${ns}.svc`, `${name}.${ns}`, ip, name];
  return [...names.map((n) => `${n}:${port}`), ...(defaultPort ? names : [])];
}

export function mesh(
  clusters: ClusterConfig[],
  vhosts: VirtualHostConfig[],
  tcp: ListenerConfig[] = [],
): MeshConfig {
  const table: RouteTableConfig = { name: 'outbound/default', version: '1', virtualHosts: vhosts };
  const listeners = new Map<string, ListenerConfig>([
    [
      'virtualOutbound',
      { kind: 'http', name: 'virtualOutbound', version: '1', address: '0.0.0.0', port: 15001, routeConfigName: 'outbound/default' },
    ],
  ]);
  for (const l of tcp) listeners.set(l.name, l);
  return {
    clusters: new Map(clusters.map((c) => [c.name, c])),
    listeners,
    routes: new Map([[table.name, table]]),
    versions: {},
  };
}

export interface Pair {
  client: DataPlane;
  server: DataPlane;
  clientRegistry: Registry;
  serverRegistry: Registry;
  outbound: number;
  inbound: number;
  close(): Promise<void>;
}

/** A client-side sidecar (its outbound is what tests talk to) and a server-side sidecar in front of `appPorts`. */
export async function startPair(appPorts: number[], opts: { headersTimeoutMs?: number; maxKb?: number; configWaitMs?: number } = {}): Promise<Pair> {
  const clientRegistry = new Registry();
  const client = createDataPlane(
    {
      outbound: { host: '127.0.0.1', port: 0 },
      inbound: { host: '127.0.0.1', port: 0 },
      appPorts: [],
      namespace: 'default',
      podIp: '127.0.0.1',
      requestHeadersTimeoutMs: opts.headersTimeoutMs,
      maxRequestHeadersKb: opts.maxKb,
      configWaitMs: opts.configWaitMs,
    },
    clientRegistry,
  );
  const serverRegistry = new Registry();
  const server = createDataPlane(
    {
      outbound: { host: '127.0.0.1', port: 0 },
      inbound: { host: '127.0.0.1', port: 0 },
      appPorts,
      namespace: 'default',
      podIp: '127.0.0.1',
      requestHeadersTimeoutMs: opts.headersTimeoutMs,
    },
    serverRegistry,
  );
  await client.start();
  await server.start();
  return {
    client,
    server,
    clientRegistry,
    serverRegistry,
    outbound: client.ports().outbound,
    inbound: server.ports().inbound,
    async close() {
      await Promise.all([client.close(100), server.close(100)]);
    },
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP/1.1 request to the sidecar's outbound port. */
export function request(
  port: number,
  opts: { host?: string; path?: string; method?: string; body?: string | Buffer; agent?: http.Agent; headers?: http.OutgoingHttpHeaders } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...opts.headers };
    if (opts.host !== undefined) headers['host'] = opts.host;
    const req = http.request(
      { host: '127.0.0.1', port, path: opts.path ?? '/', method: opts.method ?? 'GET', headers, agent: opts.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Writes raw bytes to a port and collects everything until the peer closes (or `ms` passes). */
export function raw(port: number, data: string | Buffer, ms = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const t = setTimeout(() => s.destroy(), ms);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks).toString());
    });
    s.write(data);
  });
}

/** One raw HTTP/2 frame (RFC 9113 §4.1), for tests that speak the protocol byte by byte. */
export function h2Frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** The HTTP/2 client connection preface and an empty SETTINGS frame, as a client opens with. */
export const H2_CLIENT_START = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), h2Frame(4, 0, 0, Buffer.alloc(0))]);
