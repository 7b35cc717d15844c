// Tests mTLS between two real data planes: STRICT/PERMISSIVE inbound, SPIFFE checks at the outbound, authorization, pooling.
import http from 'node:http';
import net from 'node:net';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeProxyHeader } from '../../../sidecar/upstream/index.ts';
import { StaticSource, type TestCa, testCa } from '../tls/mesh-helper.ts';
import type { AuthzPolicy, ListenerConfig } from '../../../sidecar/xds/model.ts';
import { closeServer, freePort, listen, request } from './harness.ts';
import { apiMesh, metricValue, type Sidecar, startIdentityApp, startSidecar, SVC } from './mtls-harness.ts';
import { chat, startGrpcEcho, unary } from './grpc-helpers.ts';

const WEB_ID = 'spiffe://mesh.test/ns/default/sa/web';
const API_ID = 'spiffe://mesh.test/ns/default/sa/api';

let ca: TestCa;
let app: Awaited<ReturnType<typeof startIdentityApp>>;
const open: Sidecar[] = [];

beforeAll(async () => {
  ca = await testCa('mesh.test');
  app = await startIdentityApp();
});
afterAll(async () => {
  await closeServer(app.server);
  await ca.close();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function sidecar(ns: string | undefined, sa: string, appPorts: number[] = []): Promise<Sidecar> {
  const s = await startSidecar(ns === undefined ? undefined : new StaticSource(await ca.leaf(ns, sa)), appPorts);
  open.push(s);
  return s;
}

/** A client and a server sidecar, both given the mesh with `security` on the api cluster. */
async function pair(security: Parameters<typeof apiMesh>[2] = {}, client: { ns?: string; sa: string } = { ns: 'default', sa: 'web' }) {
  const server = await sidecar('default', 'api', [app.port]);
  const c = await sidecar(client.ns, client.sa);
  const m = apiMesh(app.port, server.inbound, security);
  server.plane.update(m);
  c.plane.update(m);
  return { server, client: c };
}

/** A TCP app answering each chunk with `echo:<chunk>` and half-closing when its caller does. */
function tcpEcho(): net.Server {
  return net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (c) => s.write(`echo:${c}`));
    s.on('end', () => s.end());
  });
}

/** Writes a PROXY v2 header and a plaintext HTTP request straight to an inbound port; returns what came back. */
function plaintextTo(port: number, appPort: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(encodeProxyHeader('10.1.0.9', 0, '127.0.0.1', appPort));
      s.write('GET /plain HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n');
    });
    let out = '';
    s.on('data', (c) => (out += c));
    s.on('error', () => {});
    s.on('close', () => resolve(out));
  });
}

describe('mutual TLS between sidecars', () => {
  it('carries requests over mTLS with one handshake for many keep-alive requests', async () => {
    const { server, client } = await pair();
    for (let i = 0; i < 5; i++) {
      const r = await request(client.outbound, { host: 'api.default', path: `/n/${i}` });
      expect(r.status).toBe(200);
      expect(r.body).toBe(`/n/${i} peer=`); // the L4 path (no policy) adds no header
    }
    expect(await metricValue(client.registry, 'skein_tls_handshakes_total', { direction: 'outbound', result: 'ok' })).toBe(1);
    expect(await metricValue(server.registry, 'skein_tls_handshakes_total', { direction: 'inbound', result: 'ok' })).toBe(1);
    expect(await metricValue(client.registry, 'skein_upstream_requests_reused_total')).toBe(4);
    expect(await metricValue(server.registry, 'skein_inbound_connections_total', { transport: 'mtls', peer: WEB_ID })).toBe(1);
  });

  it('STRICT refuses plaintext (a raw PROXY header, and a sidecar running --mtls off) and counts it', async () => {
    const { server } = await pair({ mtlsMode: 'STRICT' });
    expect(await plaintextTo(server.inbound, app.port)).toBe('');
    const plain = await sidecar(undefined, 'legacy');
    plain.plane.update(apiMesh(app.port, server.inbound));
    const r = await request(plain.outbound, { host: 'api.default', path: '/x' });
    expect(r.status).toBe(503);
    expect(await metricValue(server.registry, 'skein_inbound_refused_total', { reason: 'plaintext_strict' })).toBe(2);
    // When its own config says the Service is STRICT, the plaintext sidecar's 503 says what is likely wrong.
    plain.plane.update(apiMesh(app.port, server.inbound, { mtlsMode: 'STRICT' }));
    const told = await request(plain.outbound, { host: 'api.default', path: '/y' });
    expect(told.status).toBe(503);
    expect(told.body).toContain('is STRICT and this sidecar runs with --mtls off: a peer sidecar enforcing STRICT refuses plaintext');
    expect(await metricValue(server.registry, 'skein_inbound_refused_total', { reason: 'plaintext_strict' })).toBe(3);
    // A peer that also runs --mtls off accepts plaintext whatever the mode says (the benchmark's plaintext pair).
    const plainServer = await sidecar(undefined, 'api', [app.port]);
    const both = apiMesh(app.port, plainServer.inbound, { mtlsMode: 'STRICT' });
    plainServer.plane.update(both);
    plain.plane.update(both);
    expect((await request(plain.outbound, { host: 'api.default', path: '/z' })).status).toBe(200);
  });

  it('a port no Service names is STRICT', async () => {
    const server = await sidecar('default', 'api', [app.port]);
    server.plane.update(apiMesh(app.port + 1, server.inbound)); // the cluster names another port
    expect(await plaintextTo(server.inbound, app.port)).toBe('');
    expect(await metricValue(server.registry, 'skein_inbound_refused_total', { reason: 'plaintext_strict' })).toBe(1);
  });

  it('the outbound drops identity headers a caller made up: the app never sees a forged identity', async () => {
    const { client } = await pair();
    const r = await request(client.outbound, {
      host: 'api.default',
      path: '/forged',
      headers: { 'x-skein-peer-identity': 'spiffe://mesh.test/ns/kube-system/sa/admin', 'x-forwarded-client-cert': 'By=x' },
    });
    expect(r.status).toBe(200);
    expect(r.body).toBe('/forged peer=');
  });

  it('PERMISSIVE accepts both mTLS and plaintext', async () => {
    const { server, client } = await pair({ mtlsMode: 'PERMISSIVE' });
    expect((await request(client.outbound, { host: 'api.default', path: '/tls' })).status).toBe(200);
    expect(await plaintextTo(server.inbound, app.port)).toContain('/plain peer=');
    const plain = await sidecar(undefined, 'legacy');
    plain.plane.update(apiMesh(app.port, server.inbound, { mtlsMode: 'PERMISSIVE' }));
    expect((await request(plain.outbound, { host: 'api.default', path: '/plain2' })).body).toBe('/plain2 peer=');
    expect(await metricValue(server.registry, 'skein_inbound_connections_total', { transport: 'plaintext', peer: '' })).toBe(2);
    expect(await metricValue(server.registry, 'skein_inbound_connections_total', { transport: 'mtls', peer: WEB_ID })).toBe(1);
  });

  it('the outbound refuses a peer whose SPIFFE ID the cluster does not list, and accepts a listed one', async () => {
    const { client } = await pair({ identities: ['spiffe://mesh.test/ns/default/sa/not-api'] });
    const r = await request(client.outbound, { host: 'api.default', path: '/x' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('upstream_connect_error');
    expect(r.body).toContain('SKEIN_TLS_PEER_IDENTITY');
    // The body names the identity presented and the ones expected.
    expect(r.body).toContain(`peer identity ${API_ID} is not`);
    expect(r.body).toContain('spiffe://mesh.test/ns/default/sa/not-api');
    expect(await metricValue(client.registry, 'skein_tls_handshakes_total', { direction: 'outbound', result: 'identity_mismatch' })).toBe(1);

    const ok = await pair({ identities: [API_ID] });
    expect((await request(ok.client.outbound, { host: 'api.default', path: '/y' })).status).toBe(200);
  });

  it('a change of the identities a cluster accepts applies to open connections: none is reused, requests in flight finish', async () => {
    const slow = http.createServer((req, res) => {
      req.resume();
      setTimeout(() => res.end(`${req.url} done`), req.url === '/slow' ? 300 : 0);
    });
    const slowPort = await listen(slow);
    try {
      const server = await sidecar('default', 'api', [slowPort]);
      const client = await sidecar('default', 'web');
      server.plane.update(apiMesh(slowPort, server.inbound));
      client.plane.update(apiMesh(slowPort, server.inbound, { identities: [API_ID] }));
      // Two connections that verified API_ID, both idle in the pool afterwards.
      const warm = await Promise.all([1, 2].map(() => request(client.outbound, { host: 'api.default', path: '/slow' })));
      expect(warm.map((r) => r.status)).toEqual([200, 200]);
      const inFlight = request(client.outbound, { host: 'api.default', path: '/slow' });
      await new Promise((r) => setTimeout(r, 50));
      // The Service's Pods now run as another service account.
      client.plane.update(apiMesh(slowPort, server.inbound, { identities: ['spiffe://mesh.test/ns/default/sa/api2'], version: '2' }));
      const refused = await request(client.outbound, { host: 'api.default', path: '/now' });
      expect(refused.status).toBe(503);
      expect(refused.body).toContain(`peer identity ${API_ID} is not one of [spiffe://mesh.test/ns/default/sa/api2]`);
      const finished = await inFlight;
      expect([finished.status, finished.body]).toEqual([200, '/slow done']);
      client.plane.update(apiMesh(slowPort, server.inbound, { identities: [API_ID], version: '3' }));
      expect((await request(client.outbound, { host: 'api.default', path: '/back' })).status).toBe(200);
      // A list that only grows (a rollout to a new service account) keeps the connections: no pool drains.
      client.plane.update(apiMesh(slowPort, server.inbound, { identities: [API_ID, 'spiffe://mesh.test/ns/default/sa/api3'], version: '4' }));
      expect(client.plane.clusterStats().find((c) => c.name === SVC)?.draining).toBe(0);
      client.plane.update(apiMesh(slowPort, server.inbound, { identities: ['spiffe://mesh.test/ns/default/sa/api3'], version: '5' }));
      expect(client.plane.clusterStats().find((c) => c.name === SVC)?.draining).toBe(1);
    } finally {
      await closeServer(slow);
    }
  });

  it('an identity change lets open TCP streams finish on the old pool, which then closes; new streams check the new identities', async () => {
    const echo = tcpEcho();
    const echoPort = await listen(echo);
    try {
      const server = await sidecar('default', 'api', [echoPort]);
      const client = await sidecar('default', 'web');
      const port = await freePort();
      const tcp: ListenerConfig = { kind: 'tcp', name: `t_${port}`, version: '1', address: '10.96.0.41', port, cluster: SVC };
      const meshWith = (identities: string[], version: string) => {
        const base = apiMesh(echoPort, server.inbound, { protocol: 'tcp', identities, version });
        return { ...base, listeners: new Map([[tcp.name, tcp]]) };
      };
      server.plane.update(apiMesh(echoPort, server.inbound, { protocol: 'tcp' }));
      client.plane.update(meshWith([API_ID], '1'));
      for (let i = 0; i < 100 && client.plane.tcpListenerStats()[0]?.bound !== true; i++) await new Promise((r) => setTimeout(r, 20));
      const open = (): Promise<{ say(text: string): Promise<string>; closed: Promise<void>; end(): void }> =>
        new Promise((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => resolve({ say, closed, end: () => s.end() }));
          s.on('error', () => undefined);
          const closed = new Promise<void>((r) => s.once('close', () => r()));
          const say = (text: string) =>
            new Promise<string>((r) => {
              s.once('data', (d) => r(String(d)));
              closed.then(() => r(''), () => r(''));
              s.write(text);
            });
        });
      const first = await open();
      expect(await first.say('a')).toBe('echo:a');
      client.plane.update(meshWith(['spiffe://mesh.test/ns/default/sa/api2'], '2'));
      // The open stream goes on; a new one is refused (the peer's identity is no longer accepted).
      expect(await first.say('b')).toBe('echo:b');
      const refused = await open();
      await refused.closed;
      client.plane.update(meshWith([API_ID], '3'));
      const second = await open();
      expect(await second.say('c')).toBe('echo:c');
      // The first stream ends: the pool it counted in closes, and the second stream (on the new pool) is untouched.
      first.end();
      await first.closed;
      for (let i = 0; i < 100 && (client.plane.clusterStats().find((c) => c.name === SVC)?.draining ?? 0) > 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(client.plane.clusterStats().find((c) => c.name === SVC)?.draining).toBe(0);
      expect(await second.say('d')).toBe('echo:d');
      second.end();
      await second.closed;
    } finally {
      await closeServer(echo);
    }
  });

  it('the outbound refuses a peer of another trust domain when the cluster lists no identities', async () => {
    const other = await testCa('other.test');
    try {
      const server = await startSidecar(new StaticSource(await other.leaf('default', 'api', { bundle: [...ca.ca.trustBundle(), ...other.ca.trustBundle()] })), [app.port]);
      open.push(server);
      const client = await sidecar('default', 'web');
      const bundle = [...ca.ca.trustBundle(), ...other.ca.trustBundle()];
      const trusting = await startSidecar(new StaticSource(await ca.leaf('default', 'web', { bundle })));
      open.push(trusting);
      for (const s of [server, client, trusting]) s.plane.update(apiMesh(app.port, server.inbound));
      // Even with the other root trusted, an ID outside our trust domain is refused.
      const r = await request(trusting.outbound, { host: 'api.default', path: '/x' });
      expect(r.status).toBe(503);
      expect(r.body).toContain('SKEIN_TLS_PEER_IDENTITY');
      expect((await request(client.outbound, { host: 'api.default', path: '/x' })).status).toBe(503);
    } finally {
      await other.close();
    }
  });
});

describe('authorization at the inbound sidecar', () => {
  const onlyWeb = { allow: [{ from: [{ principals: [WEB_ID] }], to: [] }], deny: [] };

  it('an allowed identity passes (the app sees it); a denied one gets a readable 403', async () => {
    const { server, client } = await pair({ authz: onlyWeb });
    // A caller cannot name itself: an x-skein-peer-identity it sends is replaced by the verified one.
    const ok = await request(client.outbound, {
      host: 'api.default',
      path: '/ok',
      headers: { 'x-skein-peer-identity': 'spiffe://mesh.test/ns/default/sa/admin', 'x-forwarded-client-cert': 'By=spiffe://evil;URI=spiffe://mesh.test/ns/default/sa/admin' },
    });
    expect(ok.status).toBe(200);
    expect(ok.body).toBe(`/ok peer=${WEB_ID}`);

    const intruder = await sidecar('default', 'batch');
    intruder.plane.update(apiMesh(app.port, server.inbound, { authz: onlyWeb }));
    const denied = await request(intruder.outbound, { host: 'api.default', path: '/secret' });
    expect(denied.status).toBe(403);
    expect(denied.headers['x-skein-reason']).toBe('rbac_denied');
    expect(denied.body).toContain('spiffe://mesh.test/ns/default/sa/batch');
    expect(denied.body).toContain('no allow rule matched');
    expect(await metricValue(server.registry, 'skein_authz_denied_total', { service: 'default/api' })).toBe(1);
    // The connection stays usable: the next allowed request on the same keep-alive path still works.
    expect((await request(client.outbound, { host: 'api.default', path: '/again' })).status).toBe(200);
  });

  it('checks methods and paths per request on one kept-alive connection', async () => {
    const policy = { deny: [{ from: [], to: [{ methods: ['DELETE'] }] }], allow: [{ from: [{ namespaces: ['default'] }], to: [{ paths: ['/public'] }] }] };
    const { client } = await pair({ authz: policy });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await request(client.outbound, { host: 'api.default', path: '/public/a', agent })).status).toBe(200);
      expect((await request(client.outbound, { host: 'api.default', path: '/private', agent })).status).toBe(403);
      const del = await request(client.outbound, { host: 'api.default', path: '/public/a', method: 'DELETE', agent });
      expect(del.status).toBe(403);
      expect(del.body).toContain('denied by deny rule 0');
      expect((await request(client.outbound, { host: 'api.default', path: '/public/b', agent })).status).toBe(200);
    } finally {
      agent.destroy();
    }
    expect(await metricValue(client.registry, 'skein_tls_handshakes_total', { direction: 'outbound', result: 'ok' })).toBe(1);
  });

  it('judges the normalised path: other spellings of a denied path are denied too, and the app gets the normalised one', async () => {
    const policy = { deny: [{ from: [], to: [{ paths: ['/admin'] }] }], allow: [{ from: [], to: [] }] };
    const { server, client } = await pair({ mtlsMode: 'PERMISSIVE', authz: policy });
    for (const path of ['/admin', '//admin', '/./admin', '/x/../admin', '/%61dmin', '/adm%69n/keys']) {
      const r = await request(client.outbound, { host: 'api.default', path });
      expect(r.status, path).toBe(403);
    }
    // The absolute form, sent straight to the inbound port (a PERMISSIVE caller).
    const raw = await new Promise<string>((resolve) => {
      const s = net.connect(server.inbound, '127.0.0.1', () => {
        s.write(encodeProxyHeader('10.1.0.9', 0, '127.0.0.1', app.port));
        s.write('GET http://api.default/admin HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n');
      });
      let out = '';
      s.on('data', (c) => (out += c));
      s.on('error', () => {});
      s.on('close', () => resolve(out));
    });
    expect(raw).toMatch(/^HTTP\/1\.1 403/);
    // A fragment: the outbound listener refuses it (400); from a native peer, the inbound cuts it (the app would).
    const viaOutbound = await rawExchange(client.outbound, 'GET /admin#frag HTTP/1.1\r\nhost: api.default\r\nconnection: close\r\n\r\n');
    expect(viaOutbound).toMatch(/^HTTP\/1\.1 400/);
    expect(viaOutbound).toContain('has a fragment');
    const h2 = http2.connect(`http://127.0.0.1:${client.outbound}`);
    try {
      const st = h2.request({ ':path': '/admin#frag', ':authority': 'api.default' });
      st.end();
      const status = await new Promise<number>((resolve) => st.once('response', (h) => resolve(Number(h[':status']))));
      expect(status).toBe(400);
    } finally {
      h2.close();
    }
    const direct = await rawExchange(server.inbound, 'GET /admin#frag HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n', encodeProxyHeader('10.1.0.9', 0, '127.0.0.1', app.port));
    expect(direct).toMatch(/^HTTP\/1\.1 403/);
    const ok = await request(client.outbound, { host: 'api.default', path: '/adminx/../public/./x' });
    expect(ok.status).toBe(200);
    expect(ok.body).toBe(`/public/x peer=${WEB_ID}`);
  });

  it('plaintext callers (PERMISSIVE) have no identity: only rules without principals or namespaces match them', async () => {
    const policy = { deny: [], allow: [{ from: [{ principals: ['*'] }], to: [] }] };
    const { server, client } = await pair({ mtlsMode: 'PERMISSIVE', authz: policy });
    expect((await request(client.outbound, { host: 'api.default', path: '/tls' })).status).toBe(200);
    const out = await plaintextTo(server.inbound, app.port);
    expect(out).toMatch(/^HTTP\/1.1 403/);
    expect(out).toContain('x-skein-reason: rbac_denied');
    expect(out).toContain('unauthenticated');
  });

  it('a TCP Service without operation rules is authorized at L4: an allowed peer half-closes cleanly, a denied one is closed', async () => {
    const echo = tcpEcho();
    const echoPort = await listen(echo);
    try {
      const server = await sidecar('default', 'api', [echoPort]);
      const tcpCluster: { protocol: 'tcp'; authz: AuthzPolicy } = { protocol: 'tcp', authz: onlyWeb };
      server.plane.update(apiMesh(echoPort, server.inbound, tcpCluster));
      const through = async (sa: string): Promise<string> => {
        const c = await sidecar('default', sa);
        const port = await freePort();
        const tcp: ListenerConfig = { kind: 'tcp', name: `t_${port}`, version: '1', address: '10.96.0.40', port, cluster: SVC };
        const base = apiMesh(echoPort, server.inbound, tcpCluster);
        c.plane.update({ ...base, listeners: new Map([[tcp.name, tcp]]) });
        for (let i = 0; i < 100 && c.plane.tcpListenerStats()[0]?.bound !== true; i++) await new Promise((r) => setTimeout(r, 20));
        return new Promise((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => s.end('hello'));
          let out = '';
          s.on('data', (d) => (out += d));
          s.on('error', () => undefined);
          s.on('close', () => resolve(out));
        });
      };
      expect(await through('web')).toBe('echo:hello');
      expect(await through('batch')).toBe('');
      expect(await metricValue(server.registry, 'skein_authz_denied_total', { service: 'default/api' })).toBe(1);
      // Rules on methods or paths cannot match a TCP connection (Istio's rule): the bytes are never parsed as HTTP.
      // An allow rule with them matches nothing; a deny rule with them applies to every caller it names.
      tcpCluster.authz = { deny: [], allow: [{ from: [{ principals: [WEB_ID] }], to: [{ methods: ['GET'] }] }] };
      server.plane.update(apiMesh(echoPort, server.inbound, tcpCluster));
      expect(await through('web')).toBe('');
      tcpCluster.authz = { deny: [{ from: [{ principals: [WEB_ID] }], to: [{ paths: ['/x'] }] }], allow: [{ from: [], to: [] }] };
      server.plane.update(apiMesh(echoPort, server.inbound, tcpCluster));
      expect(await through('web')).toBe('');
      expect(await through('batch')).toBe('echo:hello');
    } finally {
      await closeServer(echo);
    }
  });

  it('a policy change closes open connections it now refuses: a TCP peer newly denied, plaintext to a port now STRICT', async () => {
    const echoConns = new Set<net.Socket>();
    const echo = net.createServer({ allowHalfOpen: true }, (s) => {
      echoConns.add(s);
      s.on('data', (c) => s.write(`echo:${c}`));
    });
    const echoPort = await listen(echo);
    try {
      const server = await sidecar('default', 'api', [echoPort]);
      const c = await sidecar('default', 'web');
      const port = await freePort();
      const tcp: ListenerConfig = { kind: 'tcp', name: `t_${port}`, version: '1', address: '10.96.0.40', port, cluster: SVC };
      // Only the client sidecar gets the TCP listener (both run on 127.0.0.1).
      const serverMesh = (security: Parameters<typeof apiMesh>[2]) => apiMesh(echoPort, server.inbound, { protocol: 'tcp', ...security });
      server.plane.update(serverMesh({ authz: onlyWeb }));
      c.plane.update({ ...serverMesh({ authz: onlyWeb }), listeners: new Map([[tcp.name, tcp]]) });
      for (let i = 0; i < 100 && c.plane.tcpListenerStats()[0]?.bound !== true; i++) await new Promise((r) => setTimeout(r, 20));
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      const closed = new Promise((r) => s.once('close', r));
      const first = new Promise<string>((r) => s.once('data', (d) => r(String(d))));
      s.write('one');
      expect(await first).toBe('echo:one');
      server.plane.update(serverMesh({ authz: { deny: [{ from: [{ principals: [WEB_ID] }], to: [] }] } }));
      await closed;
      expect(await metricValue(server.registry, 'skein_authz_denied_total', { service: 'default/api' })).toBe(1);

      // A plaintext (PERMISSIVE) connection, open when the Service becomes STRICT.
      const http = await startIdentityApp();
      open.push({ close: () => closeServer(http.server) } as unknown as Sidecar);
      const srv = await sidecar('default', 'api', [http.port]);
      srv.plane.update(apiMesh(http.port, srv.inbound, { mtlsMode: 'PERMISSIVE' }));
      const p = net.connect(srv.inbound, '127.0.0.1');
      p.on('error', () => undefined);
      const pClosed = new Promise((r) => p.once('close', r));
      const answered = new Promise((r) => p.once('data', r));
      p.write(encodeProxyHeader('10.1.0.9', 0, '127.0.0.1', http.port));
      p.write('GET /keep HTTP/1.1\r\nhost: api\r\n\r\n');
      await answered;
      srv.plane.update(apiMesh(http.port, srv.inbound, { mtlsMode: 'STRICT' }));
      await pClosed;
    } finally {
      for (const s of echoConns) s.destroy();
      await closeServer(echo);
    }
  });

  it.each([
    ['L7 path (a policy)', { allow: [{ from: [{ namespaces: ['default'] }], to: [] }], deny: [] }],
    ['L4 pipe (no policy)', undefined],
  ] as Array<[string, AuthzPolicy | undefined]>)('HTTP/2 (gRPC) over mTLS, %s: an app that refuses the connection is a readable UNAVAILABLE', async (_name, authz) => {
    const deadPort = await freePort();
    const server = await sidecar('default', 'api', [deadPort]);
    const m = apiMesh(deadPort, server.inbound, { protocol: 'http2', ...(authz === undefined ? {} : { authz }) });
    server.plane.update(m);
    const web = await sidecar('default', 'web');
    web.plane.update(m);
    const c = new grpc.Client(`127.0.0.1:${web.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'api.default' });
    try {
      const r = await unary(c, '/demo.Echo/Say', 'hi');
      expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.error?.details).toContain(`upstream connect error: ECONNREFUSED app port ${deadPort}`);
      expect(r.error?.metadata.get('x-skein-reason')).toEqual(['upstream_connect_error']);
    } finally {
      c.close();
    }
  });

  it('HTTP/2 (gRPC) over mTLS: every call is judged on its method path, with the policy of the moment', async () => {
    const echo = await startGrpcEcho();
    const clients: grpc.Client[] = [];
    const channel = (s: Sidecar) => {
      const c = new grpc.Client(`127.0.0.1:${s.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'api.default' });
      clients.push(c);
      return c;
    };
    try {
      const server = await sidecar('default', 'api', [echo.port]);
      const webMayCall: AuthzPolicy = { allow: [{ from: [{ principals: [WEB_ID] }], to: [{ paths: ['/demo.Echo/Say', '/demo.Echo/Chat', '/demo.Echo/Missing'] }] }], deny: [] };
      const m = apiMesh(echo.port, server.inbound, { protocol: 'http2', authz: webMayCall });
      server.plane.update(m);
      const web = await sidecar('default', 'web');
      const batch = await sidecar('default', 'batch');
      web.plane.update(m);
      batch.plane.update(m);
      const w = channel(web);
      // The app sees the verified caller; a large message crosses the L7 relay whole (flow control both ways).
      expect(await unary(w, '/demo.Echo/Say', 'hi')).toEqual({ reply: `hi peer=${WEB_ID}` });
      const big = 'x'.repeat(1_000_000);
      expect((await unary(w, '/demo.Echo/Say', big)).reply?.length).toBe(big.length + ` peer=${WEB_ID}`.length);
      expect(await chat(w, ['a', 'b'])).toEqual({ replies: ['re: a', 're: b'], code: grpc.status.OK });
      const admin = await unary(w, '/demo.Echo/Admin', '');
      expect(admin.error?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(admin.error?.details).toContain(`RBAC: access denied: ${WEB_ID} may not POST /demo.Echo/Admin on default/api`);
      expect(admin.error?.metadata.get('x-skein-reason')).toEqual(['rbac_denied']);
      // The app's own statuses pass through the relay, trailers-only ones included.
      expect((await unary(w, '/demo.Echo/Missing', '')).error?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect((await unary(channel(batch), '/demo.Echo/Say', 'hi')).error?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(await metricValue(server.registry, 'skein_authz_denied_total', { service: 'default/api' })).toBe(2);
      // Each answered call is counted on the inbound side by its HTTP status (gRPC answers are 200), denials also by reason.
      const inbound = { direction: 'inbound', cluster: `inbound|${echo.port}||`, code: '200' };
      // (A stream is counted when it closes on the server side, which may come just after the client has its answer.)
      const settled = async (read: () => Promise<number>, want: number) => {
        for (let i = 0; i < 50 && (await read()) !== want; i++) await new Promise((r) => setTimeout(r, 20));
        return read();
      };
      expect(await settled(() => metricValue(server.registry, 'skein_requests_total', inbound), 6)).toBe(6);
      expect(await settled(() => metricValue(server.registry, 'skein_local_errors_total', { reason: 'rbac_denied' }), 2)).toBe(2);
      // A policy change applies to the next call on a connection already open.
      const none: AuthzPolicy = { allow: [{ from: [{ principals: [API_ID] }], to: [] }], deny: [] };
      server.plane.update(apiMesh(echo.port, server.inbound, { protocol: 'http2', authz: none }));
      expect((await unary(w, '/demo.Echo/Say', 'again')).error?.code).toBe(grpc.status.PERMISSION_DENIED);
    } finally {
      for (const c of clients) c.close();
      echo.server.forceShutdown();
    }
  });
});

/** Writes `text` (after `prefix`, e.g. a PROXY header) on a fresh connection; resolves everything read until close. */
function rawExchange(port: number, text: string, prefix?: Buffer): Promise<string> {
  return new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      if (prefix !== undefined) s.write(prefix);
      s.write(text);
    });
    let out = '';
    s.on('data', (c) => (out += c));
    s.on('error', () => {});
    s.on('close', () => resolve(out));
  });
}
