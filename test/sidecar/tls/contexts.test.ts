import { X509Certificate } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type AllowedPeers, TlsContexts } from '../../../sidecar/tls/contexts.ts';
import { peerSpiffeId } from '../../../sidecar/tls/spiffe.ts';
import { StaticSource, type TestCa, testCa } from './mesh-helper.ts';

let mesh: TestCa;
let otherMesh: TestCa;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  [mesh, otherMesh] = await Promise.all([testCa('mesh.test'), testCa('mesh.test')]);
});
afterAll(async () => {
  await Promise.all([mesh?.close(), otherMesh?.close()]);
});
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const SERVER_ID = 'spiffe://mesh.test/ns/shop/sa/cart';

interface Inbound {
  readonly port: number;
  readonly contexts: TlsContexts;
  readonly source: StaticSource;
  /** SPIFFE IDs of clients that completed the handshake. */
  readonly accepted: string[];
  /** Handshake errors seen by the server. */
  readonly refused: string[];
  readonly server: tls.Server;
}

/** An mTLS echo server built from TlsContexts.serverOptions + attachServer. */
async function startInbound(source: StaticSource): Promise<Inbound> {
  const contexts = new TlsContexts(source);
  const accepted: string[] = [];
  const refused: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = tls.createServer(contexts.serverOptions(), (socket) => {
    accepted.push(peerSpiffeId(socket) ?? '(none)');
    socket.on('data', (d) => socket.write(d));
    socket.on('error', () => undefined);
  });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException) => refused.push(err.code ?? err.message));
  const detach = contexts.attachServer(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    detach();
    contexts.close();
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, contexts, source, accepted, refused, server };
}

interface Outcome {
  readonly error?: NodeJS.ErrnoException;
  readonly socket: tls.TLSSocket;
  readonly echoed: boolean;
  /** The server certificate's serial, read at the handshake (Node frees the peer certificate soon after). */
  readonly peerSerial?: string;
}

/** Connects, sends "ping" and waits for the echo or an error. */
function exchange(contexts: TlsContexts, port: number, allowed: AllowedPeers): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = contexts.connect({ host: '127.0.0.1', port, allowed });
    cleanups.push(() => socket.destroy());
    let settled = false;
    let peerSerial: string | undefined;
    const finish = (o: Omit<Outcome, 'socket'>) => {
      if (settled) return;
      settled = true;
      resolve({ ...o, socket, peerSerial });
    };
    socket.on('secureConnect', () => {
      peerSerial = socket.getPeerX509Certificate()?.serialNumber;
      socket.write('ping');
    });
    socket.on('data', (d) => finish({ echoed: d.toString() === 'ping' }));
    socket.on('error', (error: NodeJS.ErrnoException) => finish({ error, echoed: false }));
    socket.on('close', () => finish({ echoed: false }));
  });
}

function roundTrip(socket: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once('data', (d) => resolve(d.toString()));
    socket.once('error', reject);
    socket.write(text);
  });
}

describe('mTLS between sidecars', () => {
  it('accepts a peer with the expected SPIFFE ID; each side reads the other identity', async () => {
    const inbound = await startInbound(new StaticSource(await mesh.leaf('shop', 'cart')));
    const client = new TlsContexts(new StaticSource(await mesh.leaf('web', 'frontend')));
    cleanups.push(() => client.close());
    const out = await exchange(client, inbound.port, [SERVER_ID]);
    expect(out.error).toBeUndefined();
    expect(out.echoed).toBe(true);
    expect(peerSpiffeId(out.socket)).toBe(SERVER_ID);
    expect(inbound.accepted).toEqual(['spiffe://mesh.test/ns/web/sa/frontend']);
  });

  it('refuses a server whose SPIFFE ID is not one the destination allows', async () => {
    const inbound = await startInbound(new StaticSource(await mesh.leaf('shop', 'cart')));
    const client = new TlsContexts(new StaticSource(await mesh.leaf('web', 'frontend')));
    cleanups.push(() => client.close());
    const out = await exchange(client, inbound.port, ['spiffe://mesh.test/ns/shop/sa/payments']);
    expect(out.error?.code).toBe('SKEIN_TLS_PEER_IDENTITY');
    expect(out.error?.message).toContain(`peer identity ${SERVER_ID} is not one of [spiffe://mesh.test/ns/shop/sa/payments]`);
    expect(out.echoed).toBe(false);
    const any = await exchange(client, inbound.port, 'same-trust-domain');
    expect(any.echoed).toBe(true);
  });

  it('refuses a server certificate from another CA', async () => {
    const inbound = await startInbound(new StaticSource(await otherMesh.leaf('shop', 'cart')));
    const client = new TlsContexts(new StaticSource(await mesh.leaf('web', 'frontend')));
    cleanups.push(() => client.close());
    const out = await exchange(client, inbound.port, [SERVER_ID]);
    expect(out.error?.code).toMatch(/^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|CERT_SIGNATURE_FAILURE)$/);
    expect(out.echoed).toBe(false);
  });

  it('refuses a client certificate from another CA, and a client without a certificate', async () => {
    const inbound = await startInbound(new StaticSource(await mesh.leaf('shop', 'cart')));
    const foreign = await otherMesh.leaf('web', 'frontend');
    // The client trusts our mesh (so it accepts the server) but presents a leaf from the other CA.
    const client = new TlsContexts(new StaticSource({ ...foreign, trustBundlePem: mesh.ca.trustBundle() }));
    cleanups.push(() => client.close());
    const out = await exchange(client, inbound.port, [SERVER_ID]);
    expect(out.echoed).toBe(false);
    expect(inbound.accepted).toEqual([]);
    expect(inbound.refused.length).toBeGreaterThan(0);

    const bare = tls.connect({ host: '127.0.0.1', port: inbound.port, ca: [...mesh.ca.trustBundle()], checkServerIdentity: () => undefined });
    cleanups.push(() => bare.destroy());
    const bareEcho = await new Promise<boolean>((resolve) => {
      bare.on('secureConnect', () => bare.write('ping'));
      bare.on('data', () => resolve(true));
      bare.on('error', () => resolve(false));
      bare.on('close', () => resolve(false));
    });
    expect(bareEcho).toBe(false);
    expect(inbound.accepted).toEqual([]);
  });

  it('refuses an expired server certificate and an expired client certificate', async () => {
    const longAgo = new Date(Date.now() - 3 * 24 * 3600 * 1000);
    const expiredServer = await startInbound(new StaticSource(await mesh.leaf('shop', 'cart', { at: longAgo, ttlMs: 3600_000 })));
    const client = new TlsContexts(new StaticSource(await mesh.leaf('web', 'frontend')));
    cleanups.push(() => client.close());
    const out = await exchange(client, expiredServer.port, [SERVER_ID]);
    expect(out.error?.code).toBe('CERT_HAS_EXPIRED');

    const inbound = await startInbound(new StaticSource(await mesh.leaf('shop', 'cart')));
    const expiredClient = new TlsContexts(new StaticSource(await mesh.leaf('web', 'frontend', { at: longAgo, ttlMs: 3600_000 })));
    cleanups.push(() => expiredClient.close());
    const out2 = await exchange(expiredClient, inbound.port, [SERVER_ID]);
    expect(out2.echoed).toBe(false);
    expect(inbound.accepted).toEqual([]);
    expect(inbound.refused.join(' ')).toMatch(/EXPIRED|expired|ECONNRESET|SSL/);
  });

  it('root rotation: with a bundle of old and new roots, leaves of both roots talk both ways', async () => {
    const bundle = [...mesh.ca.trustBundle(), ...otherMesh.ca.trustBundle()];
    const oldLeafServer = await startInbound(new StaticSource(await mesh.leaf('shop', 'cart', { bundle })));
    const newLeafServer = await startInbound(new StaticSource(await otherMesh.leaf('shop', 'cart', { bundle })));
    const oldClient = new TlsContexts(new StaticSource(await mesh.leaf('web', 'frontend', { bundle })));
    const newClient = new TlsContexts(new StaticSource(await otherMesh.leaf('web', 'frontend', { bundle })));
    cleanups.push(() => oldClient.close(), () => newClient.close());
    for (const client of [oldClient, newClient]) {
      for (const server of [oldLeafServer, newLeafServer]) {
        const out = await exchange(client, server.port, [SERVER_ID]);
        expect(out.error).toBeUndefined();
        expect(out.echoed).toBe(true);
      }
    }
    expect(oldLeafServer.accepted).toHaveLength(2);
    expect(newLeafServer.accepted).toHaveLength(2);
  });
});

describe('certificate rotation and session resumption', () => {
  it('keeps existing connections; new connections use the new certificates on both sides', async () => {
    const serverSource = new StaticSource(await mesh.leaf('shop', 'cart'));
    const clientSource = new StaticSource(await mesh.leaf('web', 'frontend'));
    const inbound = await startInbound(serverSource);
    const client = new TlsContexts(clientSource);
    cleanups.push(() => client.close());
    const first = await exchange(client, inbound.port, [SERVER_ID]);
    expect(first.echoed).toBe(true);
    const oldServerSerial = first.peerSerial;
    expect(oldServerSerial).toBeDefined();

    const [newServer, newClient] = [await mesh.leaf('shop', 'cart'), await mesh.leaf('web', 'frontend')];
    serverSource.rotate(newServer);
    clientSource.rotate(newClient);
    expect(client.generation).toBe(1);
    expect(inbound.contexts.generation).toBe(1);

    // The old connection still works.
    expect(await roundTrip(first.socket, 'still-there')).toBe('still-there');
    expect(peerSpiffeId(first.socket)).toBe(SERVER_ID);

    // A new connection sees the new server certificate and presents the new client certificate.
    const serverSeen: string[] = [];
    inbound.server.once('secureConnection', (s: tls.TLSSocket) => serverSeen.push(s.getPeerX509Certificate()?.serialNumber ?? ''));
    const second = await exchange(client, inbound.port, [SERVER_ID]);
    expect(second.echoed).toBe(true);
    expect(second.socket.isSessionReused()).toBe(false);
    expect(second.peerSerial).toBe(new X509Certificate(newServer.certChainPem[0] ?? '').serialNumber);
    expect(serverSeen).toEqual([new X509Certificate(newClient.certChainPem[0] ?? '').serialNumber]);
  });

  it('resumes the TLS session for repeated connections to the same peer, still checking its identity', async () => {
    const inbound = await startInbound(new StaticSource(await mesh.leaf('shop', 'cart')));
    const client = new TlsContexts(new StaticSource(await mesh.leaf('web', 'frontend')));
    cleanups.push(() => client.close());
    const first = await exchange(client, inbound.port, [SERVER_ID]);
    expect(first.echoed).toBe(true);
    expect(first.socket.isSessionReused()).toBe(false);
    const second = await exchange(client, inbound.port, [SERVER_ID]);
    expect(second.echoed).toBe(true);
    expect(second.socket.isSessionReused()).toBe(true);
    expect(peerSpiffeId(second.socket)).toBe(SERVER_ID);
    const wrong = await exchange(client, inbound.port, ['spiffe://mesh.test/ns/x/sa/y']);
    expect(wrong.error?.code).toBe('SKEIN_TLS_PEER_IDENTITY');
  });
});

describe('acceptInbound', () => {
  async function prefaceServer(contexts: TlsContexts) {
    const seen: string[] = [];
    const refused: string[] = [];
    const server = net.createServer((raw) => {
      raw.once('data', (chunk: Buffer) => {
        const nl = chunk.indexOf(0x0a);
        raw.pause(); // no bytes may flow past us before TLS takes the socket
        contexts.acceptInbound(raw, chunk.subarray(nl + 1)).then(
          (secure) => {
            seen.push(peerSpiffeId(secure) ?? '(none)');
            secure.on('data', (d) => secure.write(d));
            secure.on('error', () => undefined);
          },
          (err: Error) => refused.push(err.message),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    return { port: (server.address() as AddressInfo).port, seen, refused };
  }

  async function connectWithPreface(client: TlsContexts, port: number) {
    const raw = net.connect({ host: '127.0.0.1', port });
    await new Promise((r) => raw.once('connect', r));
    raw.write('PREFACE\n');
    const secure = client.connect({ host: '127.0.0.1', port, allowed: [SERVER_ID] }, { socket: raw });
    cleanups.push(() => secure.destroy());
    return secure;
  }

  it('runs server-side mTLS over an accepted socket after a plaintext preface, with the bytes read past it', async () => {
    const contexts = new TlsContexts(new StaticSource(await mesh.leaf('shop', 'cart')));
    const client = new TlsContexts(new StaticSource(await mesh.leaf('web', 'frontend')));
    cleanups.push(() => contexts.close(), () => client.close());
    const { port, seen } = await prefaceServer(contexts);
    const secure = await connectWithPreface(client, port);
    await new Promise((r) => secure.once('secureConnect', r));
    expect(await roundTrip(secure, 'hello')).toBe('hello');
    expect(seen).toEqual(['spiffe://mesh.test/ns/web/sa/frontend']);
  });

  it('refuses a client certificate from another CA, naming the reason and the certificate presented', async () => {
    const contexts = new TlsContexts(new StaticSource(await mesh.leaf('shop', 'cart')));
    const foreign = await otherMesh.leaf('web', 'frontend');
    const client = new TlsContexts(new StaticSource({ ...foreign, trustBundlePem: mesh.ca.trustBundle() }));
    cleanups.push(() => contexts.close(), () => client.close());
    const { port, seen, refused } = await prefaceServer(contexts);
    const secure = await connectWithPreface(client, port);
    const echoed = await new Promise<boolean>((resolve) => {
      secure.on('secureConnect', () => secure.write('x'));
      secure.on('data', () => resolve(true));
      secure.on('error', () => resolve(false));
      secure.on('close', () => resolve(false));
    });
    expect(echoed).toBe(false);
    expect(seen).toEqual([]);
    // The server's refusal is recorded on its side of the handshake, in its own time.
    await vi.waitFor(() => expect(refused.length).toBe(1), { timeout: 10_000 });
    // Node's own verification result, not a bare "aborted": the chain does not lead to the mesh's bundle.
    expect(refused[0]).toMatch(/^client certificate rejected \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?)\): presented subject/);
    expect(refused[0]).toContain('URI:spiffe://mesh.test/ns/web/sa/frontend');
  });
});
