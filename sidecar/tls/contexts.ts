// mTLS contexts for the data path: inbound server and outbound client SecureContexts, SPIFFE peer checks, sessions.
import type { X509Certificate } from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import { logger } from '../log.ts';
import { SkeinSidecarError } from '../errors.ts';
import { parseSpiffeId, peerSpiffeId, recordPeerSpiffeId, spiffeIdOfCertificate } from './spiffe.ts';

const log = logger('tls');

/** Inbound TLS sockets whose client-certificate verification is watched (see #watchVerification). */
const watched = new WeakSet<tls.TLSSocket>();

/**
 * The cipher suites offered and accepted: TLS 1.3's three, and for TLS 1.2 only forward-secret (ECDHE) AEAD suites:
 * Mozilla's "intermediate" profile without DHE, stricter than Istio's default, which also allows static-RSA AES-GCM.
 */
export const MESH_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** What a workload presents and trusts; produced by WorkloadIdentity (identity.ts) or given directly in tests. */
export interface TlsMaterial {
  readonly keyPem: string;
  /** Leaf first, then intermediates. */
  readonly certChainPem: readonly string[];
  /** Roots to trust (several during a root rotation). */
  readonly trustBundlePem: readonly string[];
  readonly spiffeId: string;
  readonly notAfter: Date;
}

export interface IdentitySource {
  current(): TlsMaterial;
  /** Calls `cb` after each rotation; returns an unsubscribe function. */
  onRotate(cb: (material: TlsMaterial) => void): () => void;
}

/** The peer identities an outbound connection accepts: listed SPIFFE IDs, or any ID of our own trust domain. */
export type AllowedPeers = readonly string[] | 'same-trust-domain';

/** The peer presented a certificate for an identity this connection does not accept. */
export class PeerIdentityError extends SkeinSidecarError {
  readonly peerId: string | undefined;
  constructor(peerId: string | undefined, expected: string) {
    super('SKEIN_TLS_PEER_IDENTITY', `peer identity ${peerId ?? '(no SPIFFE ID)'} is not ${expected}`);
    this.peerId = peerId;
  }
}

/** The peer closed the connection before the TLS handshake finished (it gave up, or timed out on its side). */
export class HandshakeAbortedError extends SkeinSidecarError {
  constructor() {
    super('SKEIN_TLS_HANDSHAKE_ABORTED', 'the peer closed the connection before the TLS handshake finished');
  }
}

/** A client certificate failed Node's chain or validity checks (not issued under the mesh's trust bundle, expired...). */
export class ClientCertificateRejectedError extends SkeinSidecarError {
  constructor(reason: string, presented: string) {
    super('SKEIN_TLS_CLIENT_CERT_REJECTED', `client certificate rejected (${reason}): presented ${presented}; the mesh accepts certificates issued under its trust bundle`);
  }
}

/** What a rejected certificate was, for the error: subject, SANs, issuer, validity (never key material). */
function describeCertificate(cert: X509Certificate | undefined): string {
  if (cert === undefined) return 'no certificate';
  // Any field may be absent (SPIFFE certificates often have an empty subject): read none of them blindly.
  const subject = oneLine(cert.subject);
  const san = cert.subjectAltName ?? 'no SAN';
  return `subject "${subject}" (${san}) issued by "${oneLine(cert.issuer)}", valid ${cert.validFrom} to ${cert.validTo}`;
}

function oneLine(dn: string | undefined): string {
  return typeof dn === 'string' ? dn.split('\n').join(', ') : '';
}

/**
 * A `checkServerIdentity` for tls.connect that replaces host-name checks with SPIFFE ID checks: the peer's only
 * URI SAN must be one of `allowed` (the identities the control plane lists for the destination).
 */
export function spiffeServerIdentityCheck(allowed: AllowedPeers, ownTrustDomain: string) {
  const expected = allowed === 'same-trust-domain' ? `in trust domain ${ownTrustDomain}` : `one of [${allowed.join(', ')}]`;
  return (_host: string, cert: tls.PeerCertificate): Error | undefined => {
    const id = spiffeIdOfCertificate(cert);
    const ok =
      id !== undefined &&
      (allowed === 'same-trust-domain' ? parseSpiffeId(id)?.trustDomain === ownTrustDomain : allowed.includes(id));
    return ok ? undefined : new PeerIdentityError(id, expected);
  };
}

export interface TlsContextsOptions {
  /** ALPN protocols offered and accepted (e.g. ['h2', 'http/1.1']); none by default. */
  readonly alpnProtocols?: readonly string[];
  /**
   * Lowest TLS version (default 'TLSv1.2', as Istio's). Skein's sidecars negotiate 1.3 with each other; 1.2 is
   * for native peers whose defaults stop there (nginx before 1.23.4, Debian 12's 1.22 among them).
   */
  readonly minVersion?: tls.SecureVersion;
  /** Outbound sessions kept for resumption, one per peer (default 1024). */
  readonly maxSessions?: number;
}

export interface OutboundTarget {
  readonly host: string;
  readonly port: number;
  readonly allowed: AllowedPeers;
  /** SNI to send (never sent for IP addresses); optional. */
  readonly servername?: string;
}

/**
 * Builds the inbound and outbound SecureContexts from the workload identity and rebuilds both on every rotation:
 * new connections use the new certificate, established ones keep theirs. Outbound TLS sessions are kept per peer
 * so repeated connections resume instead of doing a full handshake; they are dropped on rotation.
 */
export class TlsContexts {
  readonly #options: TlsContextsOptions;
  #material: TlsMaterial;
  #server: tls.SecureContext;
  #client: tls.SecureContext;
  #trustDomain: string;
  #generation = 0;
  /** Per peer (host:port): the last session and the SPIFFE ID verified when it was made. */
  readonly #sessions = new Map<string, { readonly session: Buffer; readonly peerId: string }>();
  readonly #servers = new Set<tls.Server>();
  #handoff: tls.Server | undefined;
  readonly #pending = new Map<string, { resolve: (s: tls.TLSSocket) => void; reject: (e: Error) => void }>();
  readonly #unsubscribe: () => void;

  constructor(source: IdentitySource, options: TlsContextsOptions = {}) {
    this.#options = options;
    this.#material = source.current();
    this.#server = tls.createSecureContext(this.#serverContextOptions());
    this.#client = tls.createSecureContext(this.#clientContextOptions());
    this.#trustDomain = parseSpiffeId(this.#material.spiffeId)?.trustDomain ?? '';
    this.#unsubscribe = source.onRotate((m) => this.#rebuild(m));
  }

  /** Increases on every rebuild (rotation). */
  get generation(): number {
    return this.#generation;
  }

  get spiffeId(): string {
    return this.#material.spiffeId;
  }

  #serverContextOptions(): tls.SecureContextOptions {
    const m = this.#material;
    return {
      key: m.keyPem,
      cert: m.certChainPem.join(''),
      ca: [...m.trustBundlePem],
      minVersion: this.#options.minVersion ?? 'TLSv1.2',
      ciphers: MESH_CIPHERS,
      // Needed for TLS 1.2 resumption when client certificates are verified; any constant per mesh is fine.
      sessionIdContext: 'skein-inbound',
    };
  }

  #clientContextOptions(): tls.SecureContextOptions {
    const m = this.#material;
    return {
      key: m.keyPem,
      cert: m.certChainPem.join(''),
      ca: [...m.trustBundlePem],
      minVersion: this.#options.minVersion ?? 'TLSv1.2',
      ciphers: MESH_CIPHERS,
    };
  }

  #rebuild(material: TlsMaterial): void {
    try {
      this.#material = material;
      this.#server = tls.createSecureContext(this.#serverContextOptions());
      this.#client = tls.createSecureContext(this.#clientContextOptions());
      this.#trustDomain = parseSpiffeId(material.spiffeId)?.trustDomain ?? '';
      this.#sessions.clear(); // resumed sessions would present the old certificate
      for (const server of this.#servers) server.setSecureContext(this.#serverTlsOptions());
      this.#generation++;
      log.debug('rebuilt TLS contexts', { spiffeId: material.spiffeId, notAfter: material.notAfter.toISOString() });
    } catch (err) {
      log.error('could not build TLS contexts from the rotated certificate; keeping the previous ones', {
        error: (err as Error).message,
      });
    }
  }

  /** (a) The inbound SecureContext (current identity, trust bundle as client CAs). */
  serverContext(): tls.SecureContext {
    return this.#server;
  }

  #serverTlsOptions(): tls.TlsOptions {
    return { ...this.#serverContextOptions(), requestCert: true, rejectUnauthorized: true };
  }

  /** Options for tls.createServer / http2.createSecureServer: mTLS required. Pair with `attachServer`. */
  serverOptions(): tls.TlsOptions {
    const alpn = this.#options.alpnProtocols;
    return { ...this.#serverTlsOptions(), ...(alpn ? { ALPNProtocols: [...alpn] } : {}) };
  }

  /** Keeps `server`'s certificate current: on rotation it gets the new context for new connections. */
  attachServer(server: tls.Server): () => void {
    this.#servers.add(server);
    const record = (socket: tls.TLSSocket) => {
      socket.disableRenegotiation();
      peerSpiffeId(socket);
    };
    server.prependListener('secureConnection', record);
    return () => {
      this.#servers.delete(server);
      server.off('secureConnection', record);
    };
  }

  /**
   * Server-side mTLS over an already accepted socket (e.g. after the inbound listener read a PROXY header): the
   * socket is handed to an internal, non-listening tls.Server, so Node's own chain and expiry checks apply.
   * `head` holds bytes already read past the preface; pause the socket in the same tick you stop reading it, so no
   * data event fires without a listener. Resolves with the verified socket (its peer ID recorded);
   * rejects and destroys the socket when the handshake or the client certificate fails.
   */
  acceptInbound(socket: net.Socket, head?: Buffer): Promise<tls.TLSSocket> {
    const handoff = this.#handoffServer();
    const key = tupleKey(socket);
    return new Promise((resolve, reject) => {
      this.#pending.set(key, { resolve, reject });
      socket.once('close', () => {
        const waiting = this.#pending.get(key);
        this.#pending.delete(key);
        waiting?.reject(new HandshakeAbortedError());
      });
      if (head && head.length > 0) socket.unshift(head);
      handoff.emit('connection', socket);
    });
  }

  #handoffServer(): tls.Server {
    if (this.#handoff) return this.#handoff;
    const server = tls.createServer(this.serverOptions());
    // Node's TLS server destroys a connection whose client certificate fails verification without an event, so the
    // log could only say "aborted". 'keylog' is the one server event that hands over the TLSSocket during the
    // handshake; the key material is ignored (never kept or logged). Our 'secure' listener, put first, sees the
    // presented certificate before Node's own check destroys the socket, and reports Node's reason a tick later.
    server.on('keylog', (_line: Buffer, secure: tls.TLSSocket) => this.#watchVerification(secure));
    server.on('secureConnection', (secure: tls.TLSSocket) => {
      // TLS 1.2 lets a peer ask for new handshakes on a connection (TLS 1.3 has none): each is a full handshake's CPU,
      // so none is allowed, as Envoy allows none.
      secure.disableRenegotiation();
      const waiting = this.#pending.get(tupleKey(secure));
      this.#pending.delete(tupleKey(secure));
      peerSpiffeId(secure);
      if (waiting) waiting.resolve(secure);
      else secure.destroy();
    });
    server.on('tlsClientError', (err: Error, secure: tls.TLSSocket) => {
      const waiting = this.#pending.get(tupleKey(secure));
      this.#pending.delete(tupleKey(secure));
      waiting?.reject(err);
    });
    this.#servers.add(server);
    this.#handoff = server;
    return server;
  }

  #watchVerification(secure: tls.TLSSocket): void {
    if (watched.has(secure)) return;
    watched.add(secure);
    secure.prependOnceListener('secure', () => {
      const key = tupleKey(secure);
      let presented: string;
      try {
        presented = describeCertificate(secure.getPeerX509Certificate());
      } catch {
        presented = 'a certificate that could not be read';
      }
      process.nextTick(() => {
        const reason = (secure as { authorizationError?: unknown }).authorizationError;
        if (reason === undefined || reason === null) return;
        const waiting = this.#pending.get(key);
        this.#pending.delete(key);
        waiting?.reject(new ClientCertificateRejectedError(String(reason), presented));
      });
    });
  }

  /** (b) The outbound SecureContext (our certificate, the trust bundle). */
  clientContext(): tls.SecureContext {
    return this.#client;
  }

  /**
   * Options for tls.connect to a peer sidecar: our certificate and the SPIFFE ID check. Prefer `connect()`, which
   * also resumes sessions and records the peer's ID; these options alone do neither.
   */
  connectOptions(target: OutboundTarget): tls.ConnectionOptions {
    const alpn = this.#options.alpnProtocols;
    return {
      host: target.host,
      port: target.port,
      secureContext: this.#client,
      rejectUnauthorized: true,
      checkServerIdentity: spiffeServerIdentityCheck(target.allowed, this.#trustDomain),
      ...(target.servername ? { servername: target.servername } : {}),
      ...(alpn ? { ALPNProtocols: [...alpn] } : {}),
    };
  }

  #allows(allowed: AllowedPeers, id: string): boolean {
    return allowed === 'same-trust-domain' ? parseSpiffeId(id)?.trustDomain === this.#trustDomain : allowed.includes(id);
  }

  /**
   * Connects to a peer sidecar with mutual TLS, checking its SPIFFE ID against `target.allowed`. Repeated
   * connections to the same peer resume the last session (no full handshake) when the identity verified for that
   * session is still allowed; Node skips checkServerIdentity on resumption, so this decision is made here.
   * Pass `extra.socket` to run TLS over a connection you opened (e.g. after a PROXY header).
   */
  connect(target: OutboundTarget, extra: Partial<tls.ConnectionOptions> = {}): tls.TLSSocket {
    const key = sessionKey(target);
    const cached = this.#sessions.get(key);
    const resumable = cached && this.#allows(target.allowed, cached.peerId) ? cached : undefined;
    const check = spiffeServerIdentityCheck(target.allowed, this.#trustDomain);
    let verifiedId: string | undefined;
    const options: tls.ConnectionOptions = {
      ...this.connectOptions(target),
      checkServerIdentity: (host, cert) => {
        const err = check(host, cert);
        if (!err) verifiedId = spiffeIdOfCertificate(cert);
        return err;
      },
      ...(resumable ? { session: resumable.session } : {}),
      ...extra,
    };
    const socket = tls.connect(options);
    const generation = this.#generation;
    socket.prependOnceListener('secureConnect', () => {
      socket.disableRenegotiation(); // a TLS 1.2 peer asking for another handshake gets an error, not our CPU
      const id = socket.isSessionReused() && resumable ? resumable.peerId : verifiedId;
      if (id !== undefined) recordPeerSpiffeId(socket, id);
    });
    socket.on('session', (session: Buffer) => {
      const peerId = peerSpiffeId(socket) ?? verifiedId;
      // A session made before a rotation would present our old certificate; one without a verified peer is useless.
      if (generation !== this.#generation || peerId === undefined) return;
      this.#sessions.delete(key);
      this.#sessions.set(key, { session, peerId });
      const max = this.#options.maxSessions ?? 1024;
      while (this.#sessions.size > max) {
        const oldest = this.#sessions.keys().next().value;
        if (oldest === undefined) break;
        this.#sessions.delete(oldest);
      }
    });
    return socket;
  }

  /** Forgets the cached session for a peer (e.g. after its endpoint was removed). */
  forgetSession(target: Pick<OutboundTarget, 'host' | 'port'>): void {
    this.#sessions.delete(sessionKey(target));
  }

  close(): void {
    this.#unsubscribe();
    this.#servers.clear();
    this.#sessions.clear();
  }
}

/** Identifies one TCP connection; a TLSSocket reports its underlying socket's addresses. */
function tupleKey(s: net.Socket): string {
  return `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;
}

function sessionKey(target: Pick<OutboundTarget, 'host' | 'port'>): string {
  return `${target.host}:${target.port}`;
}
