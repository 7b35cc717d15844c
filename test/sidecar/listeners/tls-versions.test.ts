// TLS versions and cipher suites between peers: TLS 1.2 with forward-secret AEAD suites (native peers such as nginx 1.22), 1.3 only on request.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TlsMaterial } from '../../../sidecar/tls/contexts.ts';
import { StaticSource, testCa, type TestCa } from '../tls/mesh-helper.ts';
import { cluster, domains, endpoint, mesh, request, route } from './harness.ts';
import { apiMesh, metricValue, type Sidecar, startIdentityApp, startSidecar, SVC } from './mtls-harness.ts';

const WEB_ID = 'spiffe://mesh.test/ns/default/sa/web';

interface Answer {
  readonly protocol: string | null;
  readonly cipher: string;
  readonly response: string;
  readonly session: Buffer | undefined;
  readonly reused: boolean;
}

/** A native-style caller: TLS to `port` with `material`, limited to `options`, one HTTP/1.1 request, the raw answer. */
function callInbound(port: number, material: TlsMaterial, options: tls.ConnectionOptions): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      key: material.keyPem,
      cert: material.certChainPem.join(''),
      ca: [...material.trustBundlePem],
      checkServerIdentity: () => undefined, // SPIFFE IDs are URI SANs; the chain is still verified
      ...options,
    });
    let response = '';
    socket.setEncoding('latin1');
    socket.on('secureConnect', () => socket.write('GET /tls HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n'));
    socket.on('data', (d: string) => (response += d));
    let session: Buffer | undefined;
    socket.on('session', (s: Buffer) => (session = s));
    socket.on('end', () =>
      resolve({ protocol: socket.getProtocol(), cipher: socket.getCipher()?.standardName ?? '', response, session, reused: socket.isSessionReused() }),
    );
    socket.on('error', reject);
  });
}

describe('TLS versions and suites at the inbound port', () => {
  let ca: TestCa;
  let app: Awaited<ReturnType<typeof startIdentityApp>>;
  let server: Sidecar;
  let strict13: Sidecar;
  let web: TlsMaterial;

  beforeAll(async () => {
    ca = await testCa('mesh.test');
    app = await startIdentityApp();
    web = await ca.leaf('default', 'web');
    server = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port]);
    server.plane.update(apiMesh(app.port, server.inbound));
    strict13 = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port], { minVersion: 'TLSv1.3' });
    strict13.plane.update(apiMesh(app.port, strict13.inbound));
  });

  afterAll(async () => {
    await server.close();
    await strict13.close();
    app.server.close();
  });

  it('accepts a TLS 1.2 caller with a mesh certificate (nginx 1.22 offers no more by default), on an ECDHE AEAD suite', async () => {
    const answer = await callInbound(server.inbound, web, { maxVersion: 'TLSv1.2' });
    expect(answer.protocol).toBe('TLSv1.2');
    expect(answer.cipher).toMatch(/^TLS_ECDHE_RSA_WITH_(AES_\d+_GCM|CHACHA20_POLY1305)/);
    expect(answer.response).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer.response).toContain('/tls');
    expect(await metricValue(server.registry, 'skein_tls_handshakes_total', { direction: 'inbound', result: 'ok' })).toBeGreaterThanOrEqual(1);
  });

  it('knows a TLS 1.2 caller that resumes its session by the certificate of the first handshake (authorization holds)', async () => {
    const guarded = await startSidecar(new StaticSource(await ca.leaf('default', 'api')), [app.port]);
    try {
      guarded.plane.update(apiMesh(app.port, guarded.inbound, { authz: { allow: [{ from: [{ principals: [WEB_ID] }], to: [] }], deny: [] } }));
      const first = await callInbound(guarded.inbound, web, { maxVersion: 'TLSv1.2' });
      expect(first.response).toContain(`/tls peer=${WEB_ID}`);
      expect(first.session).toBeDefined();
      const resumed = await callInbound(guarded.inbound, web, { maxVersion: 'TLSv1.2', session: first.session as Buffer });
      expect(resumed.reused).toBe(true);
      expect(resumed.response).toMatch(/^HTTP\/1\.1 200 /);
      expect(resumed.response).toContain(`/tls peer=${WEB_ID}`);
      expect(await metricValue(guarded.registry, 'skein_tls_handshakes_total', { direction: 'inbound', result: 'resumed' })).toBe(1);
    } finally {
      await guarded.close();
    }
  });

  it('refuses renegotiation from a TLS 1.2 caller (a full handshake\'s CPU each; TLS 1.3 has none)', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: server.inbound,
        key: web.keyPem,
        cert: web.certChainPem.join(''),
        ca: [...web.trustBundlePem],
        checkServerIdentity: () => undefined,
        maxVersion: 'TLSv1.2',
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve('closed'));
      socket.on('secureConnect', () => {
        const started = socket.renegotiate({}, (err) => resolve(err ? 'refused' : 'renegotiated'));
        if (!started) resolve('not started');
      });
    });
    expect(['refused', 'closed']).toContain(outcome);
  });

  it('still negotiates TLS 1.3 with a caller that offers it', async () => {
    const answer = await callInbound(server.inbound, web, {});
    expect(answer.protocol).toBe('TLSv1.3');
    expect(answer.response).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('refuses TLS 1.2 suites without forward secrecy or AEAD (CBC, static RSA)', async () => {
    for (const ciphers of ['ECDHE-RSA-AES128-SHA256', 'AES128-GCM-SHA256']) {
      await expect(callInbound(server.inbound, web, { maxVersion: 'TLSv1.2', ciphers }), ciphers).rejects.toThrow(/handshake failure|no shared cipher/i);
    }
  });

  it('refuses TLS 1.2 when the sidecar runs with --tls-min-version 1.3', async () => {
    await expect(callInbound(strict13.inbound, web, { maxVersion: 'TLSv1.2' })).rejects.toThrow(/protocol version/i);
    const ok = await callInbound(strict13.inbound, web, {});
    expect(ok.protocol).toBe('TLSv1.3');
  });

  it('refuses a TLS 1.2 caller whose certificate the mesh did not sign, and counts it', async () => {
    const other = await (await testCa('mesh.test')).leaf('default', 'web');
    const before = await metricValue(server.registry, 'skein_inbound_refused_total', { reason: 'client_certificate' });
    // Closed after the handshake without an answer (Node's TLS server sends no alert for a failed verification).
    const answer = await callInbound(server.inbound, other, { maxVersion: 'TLSv1.2' }).catch(() => ({ response: '' }));
    expect(answer.response).toBe('');
    await expect.poll(() => metricValue(server.registry, 'skein_inbound_refused_total', { reason: 'client_certificate' })).toBe(before + 1);
  });
});

describe('a sidecar calling a receiving peer that stops at TLS 1.2', () => {
  let ca: TestCa;
  let peer: tls.Server;
  let client: Sidecar;

  beforeAll(async () => {
    ca = await testCa('mesh.test');
    const api = await ca.leaf('default', 'api');
    // A native receiving peer (as nginx 1.22 with its default ssl_protocols): TLS 1.2 at most, client certificates required.
    const answer = http.createServer((_req, res) => res.end('tls1.2 peer'));
    peer = tls.createServer(
      {
        key: api.keyPem,
        cert: api.certChainPem.join(''),
        ca: [...api.trustBundlePem],
        requestCert: true,
        rejectUnauthorized: true,
        maxVersion: 'TLSv1.2',
      },
      (socket) => answer.emit('connection', socket),
    );
    await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve));
    const port = (peer.address() as AddressInfo).port;
    client = await startSidecar(new StaticSource(await ca.leaf('default', 'web')));
    client.plane.update(
      mesh(
        [cluster(SVC, [endpoint(port, port, { proxyProtocol: 'none' })], { service: 'default/api', identities: ['spiffe://mesh.test/ns/default/sa/api'] })],
        [{ name: 'api', domains: domains('api', 'default', '10.96.0.20', 80, true), routes: [route(SVC)] }],
      ),
    );
  });

  afterAll(async () => {
    await client.close();
    peer.close();
  });

  it('reaches it over mutual TLS 1.2', async () => {
    const r = await request(client.outbound, { host: 'api.default', path: '/' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('tls1.2 peer');
  });
});
