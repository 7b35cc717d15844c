// The admin server's endpoints and `skein proxy-status` against a live xDS server with real ADS clients.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { ControlPlaneCache } from '../../../control-plane/cache/index.ts';
import { StatusRegistry } from '../../../control-plane/xds/index.ts';
import { type AdminServerHandle, snapshotReadiness, startAdminServer } from '../../../control-plane/admin/server.ts';
import { formatProxyStatus, runProxyStatus } from '../../../control-plane/cli/proxy-status.ts';
import { TYPE_URL } from '../../../proto/index.ts';
import { envoyNode, eventually, openSotw } from '../xds/ads-client.ts';
import { cluster, endpoints, listener } from '../xds/fake-cache.ts';
import { type Harness, startHarness } from '../xds/harness.ts';

const SCOPE = 'envoy/default';
let h: Harness;
let admin: AdminServerHandle | undefined;
let registryLoaded = true;

afterEach(async () => {
  await admin?.close();
  admin = undefined;
  await h?.close();
});

async function start(): Promise<void> {
  h = await startHarness({
    [SCOPE]: {
      [TYPE_URL.cluster]: { put: [cluster('outbound|80||web.default.svc.cluster.local')] },
      [TYPE_URL.endpoint]: { put: [endpoints('outbound|80||web.default.svc.cluster.local', '10.0.0.1')] },
      [TYPE_URL.listener]: { put: [listener('virtualOutbound')] },
    },
    proxyless: { [TYPE_URL.listener]: { put: [listener('web.default.svc.cluster.local:80')] } },
  });
  registryLoaded = true;
  admin = await startAdminServer({
    port: 0,
    status: h.status,
    cache: () => h.cache,
    registries: () => [h.server.metrics.registry],
    readiness: snapshotReadiness(() => registryLoaded, () => h.cache),
  });
}

/** Two proxies: `synced` ACKs CDS; `rejecting` NACKs LDS. */
async function connectProxies(): Promise<void> {
  const good = openSotw(h.client());
  good.send({ node: envoyNode('synced'), type_url: TYPE_URL.cluster });
  const r = await good.next();
  good.send({ type_url: TYPE_URL.cluster, version_info: r.version_info, response_nonce: r.nonce });
  const bad = openSotw(h.client());
  bad.send({ node: { ...envoyNode('rejecting'), user_agent_name: 'gRPC Node' }, type_url: TYPE_URL.listener });
  const l = await bad.next();
  bad.send({
    type_url: TYPE_URL.listener,
    response_nonce: l.nonce,
    error_detail: { code: 3, message: 'listener web.default.svc.cluster.local:80: api_listener is required' },
  });
  await eventually(() => {
    const states = h.status.list().map((p) => p.types[0]?.state);
    expect(states).toEqual(['NACKED', 'SYNCED']);
  });
}

const get = (path: string) => fetch(`${admin?.url}${path}`);

describe('admin server', () => {
  it('answers /healthz, and /readyz only once the registry loaded and a snapshot exists', async () => {
    await start();
    expect(admin?.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect((await get('/healthz')).status).toBe(200);
    registryLoaded = false;
    const notReady = await get('/readyz');
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toContain('registry has not loaded');
    registryLoaded = true;
    expect((await get('/readyz')).status).toBe(200);
    expect((await fetch(`${admin?.url}/healthz`, { method: 'POST' })).status).toBe(405);
    expect((await get('/nope')).status).toBe(404);
  });

  it('answers before the control plane has a cache (it starts first): /healthz 200, /readyz and config_dump 503 saying why', async () => {
    let cache: ControlPlaneCache | undefined;
    const registries: Registry[] = [];
    let loaded = false;
    let serving = false;
    const early = await startAdminServer({
      port: 0,
      status: new StatusRegistry(),
      cache: () => cache,
      registries: () => registries,
      readiness: snapshotReadiness(() => loaded, () => cache, () => serving),
    });
    try {
      const at = (path: string) => fetch(`${early.url}${path}`);
      expect((await at('/healthz')).status).toBe(200);
      const notLoaded = await at('/readyz');
      expect([notLoaded.status, await notLoaded.text()]).toEqual([503, 'not ready: registry has not loaded its first state yet\n']);
      const dump = await at('/debug/config_dump');
      expect(dump.status).toBe(503);
      expect(((await dump.json()) as { error: string }).error).toContain('the first snapshot is building');
      expect(await (await at('/metrics')).text()).toContain('process_cpu_seconds_total');
      // The first snapshot is building, then the xDS ports open; a registry made later shows on /metrics.
      loaded = true;
      expect(await (await at('/readyz')).text()).toBe('not ready: building the first xDS snapshot\n');
      cache = { current: () => ({ serial: 1 }) } as unknown as ControlPlaneCache;
      expect(await (await at('/readyz')).text()).toBe('not ready: opening the xDS ports\n');
      serving = true;
      expect((await at('/readyz')).status).toBe(200);
      const later = new Registry();
      new Counter({ name: 'skein_made_later_total', help: 'test', registers: [later] }).inc();
      registries.push(later);
      expect(await (await at('/metrics')).text()).toContain('skein_made_later_total 1');
    } finally {
      await early.close();
    }
  });

  it('exposes the xDS metrics and process metrics on /metrics', async () => {
    await start();
    await connectProxies();
    const res = await get('/metrics');
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toMatch(/^skein_xds_connected_proxies 2$/m);
    expect(text).toMatch(/^skein_xds_nacks_total\{type="LDS"\} 1$/m);
    expect(text).toMatch(/^skein_xds_pushes_total\{type="CDS"\} 1$/m);
    expect(text).toMatch(/^skein_xds_bytes_sent_total\{type="CDS",mode="sotw"\} \d+$/m);
    expect(text).toContain('skein_xds_push_convergence_seconds_bucket');
    expect(text).toContain('process_cpu_user_seconds_total');
  });

  it('shows per-proxy delivery status, with per-resource versions on request', async () => {
    await start();
    await connectProxies();
    const body = (await (await get('/debug/proxy-status?node=synced&resources=1')).json()) as {
      proxies: { nodeId: string; types: { state: string; resources: { name: string; ackedVersion: string }[] }[] }[];
    };
    expect(body.proxies).toHaveLength(1);
    expect(body.proxies[0]?.types[0]?.state).toBe('SYNCED');
    expect(body.proxies[0]?.types[0]?.resources[0]?.name).toBe('outbound|80||web.default.svc.cluster.local');
    const all = (await (await get('/debug/proxy-status')).json()) as { proxies: { nodeId: string }[] };
    expect(all.proxies.map((p) => p.nodeId)).toEqual(['rejecting', 'synced']);
  });

  it('dumps a scope of the current snapshot with versions, and lists scopes when asked wrong', async () => {
    await start();
    const res = await get(`/debug/config_dump?scope=${encodeURIComponent(SCOPE)}&type=eds`);
    expect(res.status).toBe(200);
    const dump = (await res.json()) as { serial: number; types: Record<string, { resources: { name: string; version: string; resource: { cluster_name: string } }[] }> };
    expect(Object.keys(dump.types)).toEqual(['EDS']);
    const cla = dump.types.EDS?.resources[0];
    expect(cla?.resource.cluster_name).toBe('outbound|80||web.default.svc.cluster.local');
    expect(cla?.version).toBe(h.cache.current().scopes.get(SCOPE)?.get(TYPE_URL.endpoint)?.get(cla?.name ?? '')?.version);
    const missing = await get('/debug/config_dump');
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { scopes: string[] }).scopes).toEqual([SCOPE, 'proxyless']);
    expect((await get('/debug/config_dump?scope=nope')).status).toBe(404);
  });
});

describe('skein proxy-status', () => {
  it('prints SYNCED / NACKED per type and the text of every NACK', async () => {
    await start();
    await connectProxies();
    let out = '';
    const code = await runProxyStatus(['--control-plane', admin?.url ?? ''], { write: (s: string) => (out += s) });
    expect(code).toBe(0);
    const lines = out.split('\n');
    expect(lines[0]).toMatch(/^NAME\s+SCOPE\s+CDS\s+EDS\s+LDS\s+RDS\s+CERT EXPIRES IN\s+MODE\s+AGENT$/);
    expect(lines[1]).toMatch(/^rejecting\s+proxyless\s+NOT SENT\s+NOT SENT\s+NACKED \([0-9a-f]+\)\s+NOT SENT\s+-\s+SOTW\s+gRPC Node\/1\.30\.0$/);
    expect(lines[2]).toMatch(/^synced\s+envoy\/default\s+SYNCED\s+NOT SENT\s+NOT SENT\s+NOT SENT\s+-\s+SOTW\s+envoy\/1\.30\.0$/);
    expect(out).toContain('Rejected config (NACK):');
    expect(out).toContain('listener web.default.svc.cluster.local:80: api_listener is required');
    expect(out).toContain('resources: web.default.svc.cluster.local:80');
    // HOST:PORT works as in `skein sidecar --control-plane`; --node naming no connected proxy says so and exits 1.
    let hostPort = '';
    expect(await runProxyStatus(['--control-plane', new URL(admin?.url ?? '').host], { write: (s: string) => (hostPort += s) })).toBe(0);
    expect(hostPort).toBe(out);
    let none = '';
    expect(await runProxyStatus(['--control-plane', admin?.url ?? '', '--node', 'nosuch'], { write: (s: string) => (none += s) })).toBe(1);
    expect(none).toContain('No connected proxy has node ID "nosuch"');
  });

  it('formats STALE and an empty mesh', () => {
    expect(formatProxyStatus([])).toBe('No proxies are connected to the control plane.\n');
    const text = formatProxyStatus([
      {
        stream: 1,
        nodeId: 'p',
        scope: 'proxyless',
        userAgent: 'gRPC Node/1.14',
        mode: 'delta',
        peer: '127.0.0.1:1',
        connectedSince: new Date(0).toISOString(),
        unknownTypeUrls: [],
        types: [
          { type: 'EDS', typeUrl: TYPE_URL.endpoint, state: 'STALE', subscribed: '1', sentVersion: '7', sentNonce: 'n', sentAt: null, ackedVersion: null, ackedAt: null, lastNack: null },
        ],
      },
    ]);
    expect(text).toMatch(/^p\s+proxyless\s+NOT SENT\s+STALE\s+NOT SENT\s+NOT SENT\s+-\s+DELTA\s+gRPC Node\/1\.14$/m);
    expect(text).not.toContain('NACK');
    expect(text).not.toContain('VHDS');
  });

  it('adds a VHDS column when a proxy gets virtual hosts through VHDS ("-" for the others)', () => {
    const base = { scope: 'envoy/shop', userAgent: 'skein-sidecar', mode: 'delta' as const, peer: '127.0.0.1:1', connectedSince: new Date(0).toISOString(), unknownTypeUrls: [] };
    const synced = (type: string, typeUrl: string) => ({ type, typeUrl, state: 'SYNCED' as const, subscribed: '*', sentVersion: '3', sentNonce: 'n', sentAt: null, ackedVersion: '3', ackedAt: null, lastNack: null });
    const text = formatProxyStatus([
      { ...base, stream: 1, nodeId: 'a', types: [synced('RDS', TYPE_URL.route), synced('VHDS', TYPE_URL.virtualHost)] },
      { ...base, stream: 2, nodeId: 'b', types: [synced('RDS', TYPE_URL.route)] },
    ] as never);
    expect(text).toMatch(/^NAME\s+SCOPE\s+CDS\s+EDS\s+LDS\s+RDS\s+VHDS\s+CERT EXPIRES IN/m);
    expect(text).toMatch(/^a\s+envoy\/shop\s+NOT SENT\s+NOT SENT\s+NOT SENT\s+SYNCED\s+SYNCED\s+-\s+DELTA/m);
    expect(text).toMatch(/^b\s+envoy\/shop\s+NOT SENT\s+NOT SENT\s+NOT SENT\s+SYNCED\s+-\s+-\s+DELTA/m);
  });

  it('exits 1 with a hint when the control plane is unreachable, 2 on a bad flag', async () => {
    let err = '';
    const sink = { write: (s: string) => (err += s) };
    expect(await runProxyStatus(['--control-plane', 'http://127.0.0.1:1'], sink, sink)).toBe(1);
    expect(err).toContain('is the control plane running?');
    expect(await runProxyStatus(['--bogus'], sink, sink)).toBe(2);
  });

  it('says so when the address given is an HTTP/2-only port such as the xDS one', async () => {
    const xdsLike = http2.createServer();
    await new Promise<void>((r) => xdsLike.listen(0, '127.0.0.1', r));
    try {
      let err = '';
      const sink = { write: (s: string) => (err += s) };
      expect(await runProxyStatus(['--control-plane', `127.0.0.1:${(xdsLike.address() as AddressInfo).port}`], sink, sink)).toBe(1);
      expect(err).toContain('is it the xDS port (gRPC, 15010 by default)? proxy-status reads the admin port (15014 by default)');
    } finally {
      await new Promise((r) => xdsLike.close(r));
    }
  });
});

describe('certificate expiry in skein proxy-status', () => {
  it('after a restart (no issuance on record) shows the certificate expiry the proxy reported when it connected', async () => {
    await start();
    const s = openSotw(h.client());
    const node = { ...envoyNode('sidecar~10.0.0.7~web-1.default~default.svc.cluster.local'), metadata: { fields: { CERT_NOT_AFTER: { stringValue: '2030-01-01T00:00:00.000Z' } } } };
    s.send({ node, type_url: TYPE_URL.cluster });
    await s.next();
    const body = (await (await get('/debug/proxy-status')).json()) as { proxies: { nodeId: string; certificate?: { notAfter?: string } }[] };
    expect(body.proxies.find((p) => p.nodeId === node.id)?.certificate).toEqual({ notAfter: '2030-01-01T00:00:00.000Z' });
  });

  it('shows the time left on the certificate the CA issued to each proxy', async () => {
    const { certificateCell } = await import('../../../control-plane/cli/proxy-status.ts');
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(certificateCell({ notAfter: '2026-01-01T23:59:30Z' }, now)).toBe('23h59m');
    expect(certificateCell({ notAfter: '2026-01-01T00:42:00Z' }, now)).toBe('42m');
    expect(certificateCell({ notAfter: '2025-12-31T00:00:00Z' }, now)).toBe('EXPIRED');
    expect(certificateCell(undefined, now)).toBe('-');
  });
});
