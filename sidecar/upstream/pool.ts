// Per-endpoint connections reused across requests: HTTP/1.1 keep-alive (http.Agent), one HTTP/2 session, raw TCP.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { EndpointLoad } from '../lb/index.ts';
import { upstreamConnectError, upstreamReset } from '../listeners/errors.ts';
import type { LocalReplyError } from '../listeners/errors.ts';
import { logger } from '../log.ts';
import type { DispatchController, DispatchHandler, DispatchRequest, Headers } from './dispatch.ts';
import { stripHopByHop } from './dispatch.ts';
import { encodeProxyHeader } from './proxy-protocol.ts';
import { sendH2 } from './pool-h2.ts';

const log = logger('upstream');

export interface PoolTarget {
  readonly address: string;
  /** The app port the request is for. */
  readonly port: number;
  /** The peer sidecar's inbound port: connect there and send a PROXY v2 header naming `port`. */
  readonly inboundPort: number | undefined;
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
 * it is a TLSSocket (the pool's connect timeout covers the handshake too).
 */
export type Connector = (target: PoolTarget, header: Buffer | undefined, allowHalfOpen: boolean) => net.Socket;

export const plainConnector: Connector = (t, header, allowHalfOpen) => {
  const socket = net.connect({ host: t.address, port: t.inboundPort ?? t.port, noDelay: true, allowHalfOpen });
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
  if (e[kConnected] === false || (CONNECT_CODES.has(code) && e[kConnected] !== true)) return upstreamConnectError(code, target, err);
  return upstreamReset(code, target, err);
}

/** An http.Agent whose connections go through the endpoint pool (PROXY v2 header, counting). */
class PoolAgent extends http.Agent {
  readonly pool: EndpointPool;
  constructor(pool: EndpointPool) {
    super({ keepAlive: true, keepAliveMsecs: 1000, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' });
    this.pool = pool;
  }
  override createConnection(): Duplex {
    return this.pool.connect();
  }
}

export class EndpointPool {
  readonly target: PoolTarget;
  /** `address:port` actually dialled (the peer's inbound port when it has a sidecar). */
  readonly dialTarget: string;
  readonly load: EndpointLoad;
  private readonly gauge: ConnectionGauge;
  private readonly connector: Connector;
  private readonly header: Buffer | undefined;
  private agent: PoolAgent | undefined;
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
      target.inboundPort === undefined ? undefined : encodeProxyHeader(target.sourceIp, 0, target.address, target.port);
  }

  /** A new connection to the endpoint, with the PROXY v2 header already queued when it is a peer sidecar. */
  connect(allowHalfOpen = false): net.Socket {
    const t = this.target;
    const socket = this.connector(t, this.header, allowHalfOpen);
    const timer = setTimeout(onConnectTimeout, t.connectTimeoutMs, socket, t.connectTimeoutMs);
    socket.once((socket as { encrypted?: boolean }).encrypted === true ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
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
    this.agent ??= new PoolAgent(this);
    new H1Exchange(this, this.agent, req, handler, true);
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
    const session = http2.connect(`http://${this.dialTarget}`, { createConnection: () => this.connect() });
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
    if (this.active === 0) this.close();
    return this.drainPromise;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Closes every connection now (in-flight requests fail). */
  close(): void {
    this.draining = true;
    this.agent?.destroy();
    this.agent = undefined;
    this.h2?.close();
    this.h2 = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.drained?.();
  }
}

function onConnectTimeout(socket: net.Socket, ms: number): void {
  const err = new Error(`connect timeout after ${ms} ms`) as NodeJS.ErrnoException;
  err.code = 'ETIMEDOUT';
  socket.destroy(err);
}

const kExchange = Symbol('skein.exchange');
type WithExchange = { [kExchange]: H1Exchange };

/** One HTTP/1.1 request on the endpoint's keep-alive agent; also the controller handed to the handler. */
class H1Exchange implements DispatchController {
  readonly pool: EndpointPool;
  private readonly agent: http.Agent;
  private readonly req: DispatchRequest;
  private readonly handler: DispatchHandler;
  private readonly startedAt: number;
  private ureq: http.ClientRequest;
  private ures: http.IncomingMessage | undefined;
  private finished = false;
  private mayRetry: boolean;

  constructor(pool: EndpointPool, agent: http.Agent, req: DispatchRequest, handler: DispatchHandler, mayRetry: boolean) {
    this.pool = pool;
    this.agent = agent;
    this.req = req;
    this.handler = handler;
    this.mayRetry = mayRetry && req.body === null;
    this.startedAt = pool.load.start();
    this.ureq = this.send();
    if (this.ureq.reusedSocket) pool.reused();
    handler.onRequestStart(this);
  }

  private send(): http.ClientRequest {
    const r = this.req;
    const t = this.pool.target;
    const ureq = http.request({
      agent: this.agent,
      host: t.address,
      port: t.port,
      method: r.method,
      path: r.path,
      headers: r.headers as http.OutgoingHttpHeaders,
      setHost: r.headers['host'] === undefined,
    });
    (ureq as unknown as WithExchange)[kExchange] = this;
    ureq.on('response', onH1Response);
    ureq.on('error', onH1RequestError);
    if (r.body === null) ureq.end();
    else r.body.pipe(ureq);
    return ureq;
  }

  requestError(err: NodeJS.ErrnoException): void {
    if (this.finished) return;
    // A kept-alive connection the server closed as we reused it: send once more on a fresh one (no body sent).
    if (this.ures === undefined && this.mayRetry && this.ureq.reusedSocket && err.code === 'ECONNRESET') {
      log.debug('retrying on a fresh connection after a stale keep-alive reset', { target: this.pool.dialTarget });
      this.mayRetry = false;
      this.ureq = this.send();
      return;
    }
    this.fail(upstreamError(err, this.pool.dialTarget));
  }

  response(ures: http.IncomingMessage): void {
    this.ures = ures;
    (ures as unknown as WithExchange)[kExchange] = this;
    ures.on('data', onH1Data);
    ures.on('end', onH1End);
    ures.on('aborted', onH1Aborted);
    ures.on('error', onH1ResponseError);
    this.handler.onResponseStart(ures.statusCode ?? 502, stripHopByHop(ures.headers as Headers));
  }

  data(chunk: Buffer): void {
    if (!this.handler.onResponseData(chunk)) this.ures?.pause();
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.load.finish(this.startedAt);
    this.pool.release();
    const u = this.ures;
    const trailers = u !== undefined && u.rawTrailers.length > 0 ? (u.trailers as Headers) : undefined;
    this.handler.onResponseEnd(trailers);
  }

  fail(error: LocalReplyError): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.load.finish(this.startedAt);
    this.pool.release();
    this.ureq.destroy();
    this.handler.onResponseError(error);
  }

  pause(): void {
    this.ures?.pause();
  }
  resume(): void {
    this.ures?.resume();
  }
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.load.finish(this.startedAt);
    this.pool.release();
    this.ureq.destroy();
  }
}

function onH1Response(this: http.ClientRequest, ures: http.IncomingMessage): void {
  (this as unknown as WithExchange)[kExchange].response(ures);
}
function onH1RequestError(this: http.ClientRequest, err: NodeJS.ErrnoException): void {
  (this as unknown as WithExchange)[kExchange].requestError(err);
}
function onH1Data(this: http.IncomingMessage, chunk: Buffer): void {
  (this as unknown as WithExchange)[kExchange].data(chunk);
}
function onH1End(this: http.IncomingMessage): void {
  (this as unknown as WithExchange)[kExchange].end();
}
function onH1Aborted(this: http.IncomingMessage): void {
  const ex = (this as unknown as WithExchange)[kExchange];
  ex.fail(upstreamReset('ECONNRESET', ex.pool.dialTarget));
}
function onH1ResponseError(this: http.IncomingMessage, err: NodeJS.ErrnoException): void {
  const ex = (this as unknown as WithExchange)[kExchange];
  ex.fail(upstreamReset(err.code ?? 'ECONNRESET', ex.pool.dialTarget, err));
}
