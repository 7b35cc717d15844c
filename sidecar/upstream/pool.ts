// Per-endpoint connections reused across requests: HTTP/1.1 keep-alive (our own pool), one HTTP/2 session, raw TCP.
import http2 from 'node:http2';
import net from 'node:net';
import type { EndpointLoad } from '../lb/index.ts';
import { upstreamConnectError, upstreamReset } from '../listeners/errors.ts';
import type { LocalReplyError } from '../listeners/errors.ts';
import { logger } from '../log.ts';
import type { DispatchHandler, DispatchRequest } from './dispatch.ts';
import { encodeProxyHeader } from './proxy-protocol.ts';
import { H1Pool } from './pool-h1.ts';
import { sendH2 } from './pool-h2.ts';
import { trackSettings } from './h2-settings.ts';

const log = logger('upstream');

export interface PoolTarget {
  readonly address: string;
  /** The app port the request is for. */
  readonly port: number;
  /** The peer sidecar's inbound port: connect there and send a PROXY v2 header naming `port`. */
  readonly inboundPort: number | undefined;
  /** Where the PROXY v2 header goes: unset, inside the TLS stream; `outside-tls`, before the handshake; `none`, not sent. */
  readonly proxyProtocol?: 'outside-tls' | 'none' | undefined;
  /** This pod's IP, the PROXY header's source. */
  readonly sourceIp: string;
  readonly connectTimeoutMs: number;
  /** The SPIFFE IDs a peer sidecar of this cluster may present (empty: any of our trust domain); kept current by the cluster. */
  readonly peers?: PeerIdentities;
}

/** Mutable holder shared by a cluster's pools, so new connections check the identities of the latest config. */
export interface PeerIdentities {
  ids: readonly string[];
}

/**
 * Opens the transport to an endpoint with `header` (the PROXY v2 header, for peer sidecars) queued as its first
 * bytes: plain TCP here, mutual TLS in connector.ts. The socket is usable after 'connect', or 'secureConnect' when
 * it is a TLSSocket (the pool's connect timeout covers the handshake too). `onread`, when given, is honoured by plain
 * TCP sockets (bytes go to its callback, no 'data' events); a connector may ignore it (TLS), so callers listen to both.
 */
export type Connector = (target: PoolTarget, header: Buffer | undefined, allowHalfOpen: boolean, onread?: net.OnReadOpts) => net.Socket;

export const plainConnector: Connector = (t, header, allowHalfOpen, onread) => {
  const socket = net.connect({ host: t.address, port: t.inboundPort ?? t.port, noDelay: true, allowHalfOpen, onread });
  if (header !== undefined) socket.write(header);
  return socket;
};

/** Connection counting for skein_upstream_connections, shared by every pool of a cluster. */
export interface ConnectionGauge {
  inc(): void;
  dec(): void;
  /** A request went out on an already open connection or session (skein_upstream_requests_reused_total). */
  reused(): void;
}

/** Error codes that mean the connection was never made (503 upstream_connect_error); others are resets. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EADDRNOTAVAIL']);

const kConnected = Symbol('skein.connected');

/** Classifies a socket error for a local reply. */
export function upstreamError(err: unknown, target: string): LocalReplyError {
  const e = err as NodeJS.ErrnoException & { [kConnected]?: boolean };
  const code = e?.code ?? 'ECONNRESET';
  // kConnected is false when the socket failed before it was usable (refused, timed out, TLS handshake failed).
  if (e[kConnected] === false || (CONNECT_CODES.has(code) && e[kConnected] !== true)) return upstreamConnectError(code, `${target}${connectDetail(e, code)}`, err);
  return upstreamReset(code, target, err);
}

/**
 * What a failed handshake adds to the local reply: which identity the peer presented and which were expected, or
 * the TLS library's reason. A socket error (ECONNREFUSED...) says all in its code.
 */
function connectDetail(e: NodeJS.ErrnoException, code: string): string {
  if (CONNECT_CODES.has(code) || typeof e?.message !== 'string' || e.message === '') return '';
  if (code === 'SKEIN_TLS_PEER_IDENTITY') return `: ${e.message} (the mesh expects the identities of the Service's Pods' serviceAccountName)`;
  return `: ${e.message}`;
}

function closedBeforeSettings(): NodeJS.ErrnoException {
  const err = new Error('the connection closed') as NodeJS.ErrnoException;
  err.code = 'ECONNRESET';
  return err;
}

export class EndpointPool {
  readonly target: PoolTarget;
  /** `address:port` actually dialled (the peer's inbound port when it has a sidecar). */
  readonly dialTarget: string;
  readonly load: EndpointLoad;
  private readonly gauge: ConnectionGauge;
  private readonly connector: Connector;
  private readonly header: Buffer | undefined;
  /** HTTP/1.1 keep-alive connections (one request per connection at a time), created on first use. */
  private h1: H1Pool | undefined;
  /** When the current HTTP/2 session came up (EndpointLoad's clock): latency samples start no earlier. */
  sessionReadyAt = 0;
  /** HTTP/2 session, created on first use and replaced when it closes. */
  h2: http2.ClientHttp2Session | undefined;
  /** Requests and TCP streams in progress. */
  active = 0;
  connections = 0;
  private draining = false;
  private drained: (() => void) | undefined;
  private drainPromise: Promise<void> | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(target: PoolTarget, load: EndpointLoad, gauge: ConnectionGauge, connector: Connector = plainConnector) {
    this.target = target;
    this.load = load;
    this.gauge = gauge;
    this.connector = connector;
    const dialPort = target.inboundPort ?? target.port;
    this.dialTarget = `${target.address}:${dialPort}`;
    this.header =
      target.inboundPort === undefined || target.proxyProtocol === 'none'
        ? undefined
        : encodeProxyHeader(target.sourceIp, 0, target.address, target.port);
  }

  /**
   * A new connection to the endpoint, with the PROXY v2 header already queued when it is a peer sidecar. `onread`:
   * read into that buffer and callback instead of 'data' events, where the connector supports it (plain TCP).
   */
  connect(allowHalfOpen = false, onread?: net.OnReadOpts): net.Socket {
    const t = this.target;
    const socket = this.connector(t, this.header, allowHalfOpen, onread);
    // What the connection waits for: 0, TCP; 1, the TLS handshake; 2, nothing (up). A timeout checks it is still due.
    let stage = 0;
    let timer = setTimeout(onConnectTimeout, t.connectTimeoutMs, socket, t.connectTimeoutMs, 'connect', () => stage === 0);
    const encrypted = (socket as { encrypted?: boolean }).encrypted === true;
    if (encrypted) {
      // The cluster's connect timeout is for TCP; the mTLS handshake after it gets its own allowance, so a CPU-bound
      // peer (a burst of new connections) is not taken for an unreachable one.
      socket.once('connect', () => {
        clearTimeout(timer);
        stage = 1;
        timer = setTimeout(onConnectTimeout, TLS_HANDSHAKE_TIMEOUT_MS, socket, TLS_HANDSHAKE_TIMEOUT_MS, 'TLS handshake', () => stage === 1);
      });
    }
    socket.once(encrypted ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      stage = 2;
      (socket as unknown as Record<symbol, boolean>)[kConnected] = true;
      this.connections++;
      this.gauge.inc();
    });
    socket.on('error', (err: NodeJS.ErrnoException & { [kConnected]?: boolean }) => {
      clearTimeout(timer);
      err[kConnected] = (socket as unknown as Record<symbol, boolean>)[kConnected] === true;
    });
    socket.once('close', () => {
      clearTimeout(timer);
      this.sockets.delete(socket);
      if ((socket as unknown as Record<symbol, boolean>)[kConnected]) {
        this.connections--;
        this.gauge.dec();
      }
    });
    this.sockets.add(socket);
    return socket;
  }

  /** Sends one HTTP request on a pooled connection (HTTP/2 when the request or cluster needs it). */
  request(req: DispatchRequest, handler: DispatchHandler, h2: boolean): void {
    this.active++;
    if (h2) {
      sendH2(this, req, handler);
      return;
    }
    (this.h1 ??= new H1Pool(this)).send(req, handler);
  }

  /** Counts a request sent on a connection that already carried one. */
  reused(): void {
    this.gauge.reused();
  }

  /** A raw half-open-capable connection for a TCP proxy stream; call `release` when the stream closes. */
  openStream(): net.Socket {
    this.active++;
    return this.connect(true);
  }

  /** Marks one request or stream finished; closes the pool when it was the last one of a draining pool. */
  release(): void {
    if (this.active > 0) this.active--;
    if (this.draining && this.active === 0) this.close();
  }

  /** The HTTP/2 session to this endpoint (made on demand). */
  session(): http2.ClientHttp2Session {
    const s = this.h2;
    if (s !== undefined && !s.closed && !s.destroyed) {
      this.gauge.reused();
      return s;
    }
    const session: http2.ClientHttp2Session = http2.connect(`http://${this.dialTarget}`, {
      createConnection: () => {
        const socket = this.connect();
        // A socket that fails or closes before the session took it over (refused, a TLS handshake cut off) must end
        // the session: node's session only watches its socket once connected, and would wait forever, with every
        // request queued on it (seen when a peer sidecar went away under load).
        let lastError: NodeJS.ErrnoException | undefined;
        socket.on('error', (err: NodeJS.ErrnoException) => (lastError = err));
        socket.once('close', () => {
          if (!session.destroyed) session.destroy(lastError ?? closedBeforeSettings());
        });
        return socket;
      },
    });
    trackSettings(session);
    session.once('connect', () => (this.sessionReadyAt = this.load.sent()));
    session.on('error', (err) => log.debug('h2 session error', { target: this.dialTarget, code: (err as NodeJS.ErrnoException).code }));
    session.on('close', () => {
      if (this.h2 === session) this.h2 = undefined;
    });
    session.on('goaway', () => {
      if (this.h2 === session) this.h2 = undefined;
    });
    this.h2 = session;
    return session;
  }

  /** No new requests; in-flight ones finish, then every connection closes. */
  drain(): Promise<void> {
    if (this.drainPromise !== undefined) return this.drainPromise;
    this.draining = true;
    this.drainPromise = new Promise((resolve) => {
      this.drained = resolve;
    });
    // Idle connections close now; busy ones when their response ends.
    this.h1?.closeIdle();
    if (this.active === 0) this.close();
    return this.drainPromise;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Closes every connection now (in-flight requests fail). */
  close(): void {
    this.draining = true;
    this.h1?.closeIdle();
    this.h2?.close();
    this.h2 = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.drained?.();
  }
}

/** How long an mTLS handshake to a peer sidecar may take once TCP is up (Istio's connect timeout covers both: 10 s). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * A connect (or TLS handshake) timer fired: the connection fails unless it came up meanwhile. Decided after this
 * event-loop turn's I/O (setImmediate runs after the poll phase), because timers run before I/O: once the loop was
 * held past the timeout (a long GC pause, a CPU-starved process, a burst of a thousand connects), the timer would
 * otherwise fail a connection the kernel had completed, whose 'connect' was waiting in the very same turn.
 */
function onConnectTimeout(socket: net.Socket, ms: number, what: string, stillWaiting: () => boolean): void {
  setImmediate(() => {
    if (!stillWaiting() || socket.destroyed) return;
    const err = new Error(`${what} timeout after ${ms} ms`) as NodeJS.ErrnoException;
    err.code = 'ETIMEDOUT';
    socket.destroy(err);
  });
}
