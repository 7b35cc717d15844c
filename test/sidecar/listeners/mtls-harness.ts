// Test harness for mTLS between sidecars: data planes with TlsContexts from a real test CA, and metric readers.
import http from 'node:http';
import { Registry } from 'prom-client';
import { createDataPlane } from '../../../sidecar/listeners/index.ts';
import type { DataPlane } from '../../../sidecar/listeners/index.ts';
import type { IdentitySource, TlsContextsOptions } from '../../../sidecar/tls/contexts.ts';
import { TlsContexts } from '../../../sidecar/tls/contexts.ts';
import type { ClusterConfig } from '../../../sidecar/xds/model.ts';
import { cluster, domains, endpoint, listen, mesh, route } from './harness.ts';

export interface Sidecar {
  readonly plane: DataPlane;
  readonly registry: Registry;
  readonly contexts: TlsContexts | undefined;
  readonly outbound: number;
  readonly inbound: number;
  close(): Promise<void>;
}

/** A data plane on 127.0.0.1 (OS-chosen ports) with mTLS from `source`, or plaintext when `source` is undefined. */
export async function startSidecar(
  source: IdentitySource | undefined,
  appPorts: number[] = [],
  tlsOptions: TlsContextsOptions = {},
): Promise<Sidecar> {
  const registry = new Registry();
  const contexts = source === undefined ? undefined : new TlsContexts(source, tlsOptions);
  const plane = createDataPlane(
    {
      outbound: { host: '127.0.0.1', port: 0 },
      inbound: { host: '127.0.0.1', port: 0 },
      appPorts,
      namespace: 'default',
      podIp: '127.0.0.1',
      ...(contexts ? { tls: contexts } : {}),
    },
    registry,
  );
  await plane.start();
  return {
    plane,
    registry,
    contexts,
    outbound: plane.ports().outbound,
    inbound: plane.ports().inbound,
    async close() {
      await plane.close(100);
      contexts?.close();
    },
  };
}

export const SVC = 'outbound|80||api.default.svc.cluster.local';

/** The mesh both sides see: Service `api` with one endpoint (the app behind `server`'s inbound port). */
export function apiMesh(appPort: number, inboundPort: number, security: Partial<ClusterConfig> = {}) {
  return mesh(
    [cluster(SVC, [endpoint(appPort, inboundPort)], { service: 'default/api', ...security })],
    [{ name: 'api', domains: domains('api', 'default', '10.96.0.20', 80, true), routes: [route(SVC)] }],
  );
}

/** An app that answers `<path> peer=<x-skein-peer-identity>` (and ` xfcc=<x-forwarded-client-cert>` if one came); every `closeEvery`-th response closes its connection. */
export async function startIdentityApp(closeEvery = 0): Promise<{ server: http.Server; port: number }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      n++;
      if (closeEvery > 0 && n % closeEvery === 0) res.setHeader('connection', 'close');
      const xfcc = req.headers['x-forwarded-client-cert'];
      res.end(`${req.url} peer=${String(req.headers['x-skein-peer-identity'] ?? '')}${xfcc === undefined ? '' : ` xfcc=${String(xfcc)}`}`);
    });
  });
  const port = await listen(server);
  return { server, port };
}

/** The value of one series of a metric (0 when absent). */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => String(x.labels[k]) === val));
  return v?.value ?? 0;
}
