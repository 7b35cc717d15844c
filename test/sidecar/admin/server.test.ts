// Tests the sidecar admin server over real HTTP: readiness, Prometheus text, config dump, cluster stats, errors.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminServer, type ClusterStats, readinessOf } from '../../../sidecar/admin/server.ts';
import { AdminListenError } from '../../../sidecar/errors.ts';
import type { XdsClientState } from '../../../sidecar/xds/client.ts';
import { createXdsMetrics } from '../../../sidecar/xds/metrics.ts';
import type { ClusterConfig, MeshConfig } from '../../../sidecar/xds/model.ts';

const WEB = 'outbound|80||web.default.svc.cluster.local';

const waiting: XdsClientState = {
  server: '127.0.0.1:15010',
  connected: false,
  protocol: 'delta',
  lastError: 'UNAVAILABLE: connect ECONNREFUSED',
  versions: {},
  warming: { warm: false, missing: ['Cluster (no response yet)'] },
  published: false,
};

const published: XdsClientState = {
  ...waiting,
  connected: true,
  lastError: undefined,
  published: true,
  versions: { 'type.googleapis.com/envoy.config.cluster.v3.Cluster': 'v1' },
  warming: { warm: true, missing: [] },
  lastNack: { typeUrl: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', text: 'Cluster "x": lb_policy: MAGLEV is not supported', at: '2026-01-01T00:00:00.000Z' },
};

const cluster: ClusterConfig = {
  name: WEB,
  version: 'c1',
  kind: 'eds',
  lbPolicy: 'p2c-ewma',
  connectTimeoutMs: 1000,
  protocol: 'http1',
  endpoints: [{ address: '10.0.0.1', port: 8080, weight: 1, health: 'healthy' }],
  endpointsVersion: 'e1',
};

const mesh: MeshConfig = {
  clusters: new Map([[WEB, cluster]]),
  listeners: new Map([
    ['virtualOutbound', { kind: 'http', name: 'virtualOutbound', version: 'l1', address: '0.0.0.0', port: 15001, routeConfigName: 'outbound/default' }],
  ]),
  routes: new Map([['outbound/default', { name: 'outbound/default', version: 'r1', virtualHosts: [] }]]),
  versions: published.versions,
};

const stats: ClusterStats[] = [
  {
    name: WEB,
    lbPolicy: 'p2c-ewma',
    draining: 1,
    endpoints: [{ address: '10.0.0.1', port: 8080, health: 'healthy', weight: 1, inboundPort: 15006, active: 2, connections: 1, latencyMs: 1.23456 }],
  },
];

const servers: AdminServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function start(state: () => XdsClientState, dataPlaneReady: () => boolean) {
  const registry = new Registry();
  const metrics = createXdsMetrics(registry);
  const server = new AdminServer({
    host: '127.0.0.1',
    port: 0,
    registry,
    readiness: () => readinessOf(state(), dataPlaneReady()),
    xdsState: state,
    mesh: () => (state().published ? mesh : undefined),
    clusterStats: () => stats,
    dumpExtras: () => ({ node: { id: 'sidecar~10.1.2.3~web-0.default~default.svc.cluster.local' } }),
  });
  await server.start();
  servers.push(server);
  const base = `http://127.0.0.1:${server.port}`;
  return { server, metrics, get: (path: string, init?: RequestInit) => fetch(`${base}${path}`, init) };
}

describe('readinessOf', () => {
  it('explains each reason it is not ready', () => {
    expect(readinessOf(waiting, true)).toEqual({
      ready: false,
      reason: 'no config from the control plane yet: not connected to the control plane at 127.0.0.1:15010 (UNAVAILABLE: connect ECONNREFUSED)',
    });
    expect(readinessOf({ ...waiting, connected: true }, true).reason).toBe(
      'no config from the control plane yet: connected to 127.0.0.1:15010, waiting for Cluster (no response yet)',
    );
    expect(readinessOf(published, false)).toEqual({ ready: false, reason: 'config received but the listeners are not serving yet' });
    expect(readinessOf(published, true)).toEqual({ ready: true, reason: 'ready' });
    expect(readinessOf(published, true, true)).toEqual({ ready: false, reason: 'draining: the sidecar is shutting down' });
  });
});

describe('AdminServer', () => {
  it('answers /healthz always and /ready only once config is applied and listeners are up', async () => {
    let state = waiting;
    let up = false;
    const { get } = await start(() => state, () => up);
    expect((await get('/healthz')).status).toBe(200);
    const notReady = await get('/ready');
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toMatch(/^not ready: no config from the control plane yet: not connected/);
    state = published;
    expect((await get('/ready')).status).toBe(503);
    up = true;
    const ready = await get('/ready');
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('ready\n');
  });

  it('serves the registry as Prometheus text, with the xDS client metrics', async () => {
    const { get, metrics } = await start(() => published, () => true);
    metrics.connected.set(1);
    metrics.updates.inc({ type: 'CDS' });
    metrics.nacks.inc({ type: 'RDS' });
    const res = await get('/stats/prometheus');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain('skein_sidecar_xds_connected 1');
    expect(text).toContain('skein_sidecar_xds_updates_total{type="CDS"} 1');
    expect(text).toContain('skein_sidecar_xds_nacks_total{type="RDS"} 1');
  });

  it('dumps versions, the last NACK and the applied config as JSON', async () => {
    const { get } = await start(() => published, () => true);
    const res = await get('/config_dump');
    expect(res.headers.get('content-type')).toBe('application/json');
    const dump = (await res.json()) as {
      xds: { versions: unknown; lastNack: { text: string } };
      node: { id: string };
      clusters: unknown[];
      listeners: { name: string }[];
      routes: { name: string }[];
    };
    expect(dump.xds.versions).toEqual(published.versions);
    expect(dump.xds.lastNack.text).toBe('Cluster "x": lb_policy: MAGLEV is not supported');
    expect(dump.node.id).toMatch(/^sidecar~/);
    expect(dump.clusters).toEqual([cluster]);
    expect(dump.listeners[0]?.name).toBe('virtualOutbound');
    expect(dump.routes[0]?.name).toBe('outbound/default');
  });

  it('shows cluster endpoints with health and counters, as text or JSON', async () => {
    const { get } = await start(() => published, () => true);
    const text = await (await get('/clusters')).text();
    expect(text.split('\n')).toEqual([
      `${WEB}::lb_policy::p2c-ewma`,
      `${WEB}::draining_endpoints::1`,
      `${WEB}::10.0.0.1:8080::health_flags::healthy`,
      `${WEB}::10.0.0.1:8080::weight::1`,
      `${WEB}::10.0.0.1:8080::inbound_port::15006`,
      `${WEB}::10.0.0.1:8080::rq_active::2`,
      `${WEB}::10.0.0.1:8080::cx_active::1`,
      `${WEB}::10.0.0.1:8080::latency_ewma_ms::1.235`,
      '',
    ]);
    expect(await (await get('/clusters?format=json')).json()).toEqual({ clusters: stats });
  });

  it('answers unknown pages 404 and other methods 405', async () => {
    const { get } = await start(() => published, () => true);
    expect((await get('/nope')).status).toBe(404);
    const post = await get('/ready', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('reports a busy port as AdminListenError', async () => {
    const { server } = await start(() => published, () => true);
    const second = new AdminServer({
      host: '127.0.0.1',
      port: server.port,
      registry: new Registry(),
      readiness: () => ({ ready: true, reason: 'ready' }),
      xdsState: () => published,
      mesh: () => undefined,
      clusterStats: () => [],
    });
    const err = await second.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdminListenError);
    expect((err as AdminListenError).code).toBe('SKEIN_ADMIN_LISTEN');
    expect((err as Error).message).toMatch(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE.*--admin-address/);
  });
});
