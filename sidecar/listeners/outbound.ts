// The outbound HTTP listener: accepts HTTP/1.1 (raw sockets parsed by llhttp) and h2c (by connection preface), routes each request, dispatches it.
import http2 from 'node:http2';
import net from 'node:net';
import { DownstreamConnection } from '../http1/downstream-connection.ts';
import type { DownstreamHost } from '../http1/downstream-connection.ts';
import { findRoute, pickCluster, splitAbsoluteUrl } from '../router/index.ts';
import type { CompiledRoute, RouteTable } from '../router/index.ts';
import { headerListFromObject, headerListFromRaw, headerListValue, keepPushed } from '../upstream/index.ts';
import type { ClusterManager, Dispatch, DispatchRequest, HeaderList, Headers, RequestHeadInfo } from '../upstream/index.ts';
import type { ClusterRequestMetrics, DataPlaneMetrics } from '../telemetry/metrics.ts';
import { logger } from '../log.ts';
import { affinityKey } from './affinity-key.ts';
import { badRequest, fragmentInTarget, headersTooLarge, invalidAuthority, isValidAuthority, noCluster, noConfig, noPathRoute, noRoute } from './errors.ts';
import type { LocalReason, LocalReplyError } from './errors.ts';
import { H1Downstream, H2Downstream } from './downstream.ts';
import { IdleSweeper, abandonExchanges, markActive } from './idle.ts';
import type { ExchangeScope } from './downstream.ts';
import { H2HeaderSource, NO_HEADERS, RawHeaderSource } from './header-source.ts';
import type { HeaderSource } from './header-source.ts';
import { replyH2 } from './local-reply.ts';
import { startUpgrade, tunnelledProtocol } from './upgrade.ts';
import { closeIdleSessions, giveToH2Server, logSessionErrors } from './h2-socket.ts';
import { clearIdleTimeout, setIdleTimeout } from './socket-timeout.ts';

const log = logger('listener');

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface OutboundOptions {
  readonly host: string;
  readonly port: number;
  readonly requestHeadersTimeoutMs: number;
  readonly maxRequestHeadersKb: number;
  /** Keep-alive connections with nothing in flight close after this long (default 300 s). */
  readonly idleTimeoutMs?: number;
  /** How long a request that arrives before the first config waits for it (default CONFIG_WAIT_MS). */
  readonly configWaitMs?: number;
  /** The pod's IP: the client address a `sessionAffinity: ClientIP` Service hashes on when the app calls over loopback. */
  readonly podIp?: string;
}

const IDLE_TIMEOUT_MS = 300_000;
/** How long a request that arrives before the first config waits for it. */
export const CONFIG_WAIT_MS = 10_000;
/** Requests held for the first config at most; more are refused at once. */
const MAX_WAITING = 1024;

/** What a request resolved to before dispatch: a route and its chosen cluster, or a local reply. */
interface Resolution {
  route: CompiledRoute | undefined;
  cluster: string;
  /** The cluster's cached metric children (no label lookups per request). */
  metrics: ClusterRequestMetrics | undefined;
  error: LocalReplyError | undefined;
}

export class OutboundListener implements DownstreamHost {
  readonly scope: ExchangeScope;
  private readonly options: OutboundOptions;
  private readonly manager: ClusterManager;
  private readonly dispatch: Dispatch;
  private readonly metrics: DataPlaneMetrics;
  private readonly server: net.Server;
  private readonly h2: http2.Http2Server;
  private readonly sockets = new Set<net.Socket>();
  /** HTTP/1.1 connections (after the preface sniff), for the header-timeout sweep and draining. */
  private readonly h1 = new Set<DownstreamConnection>();
  private readonly idle: IdleSweeper;
  /** How long a client connection may sit idle (nothing in flight, or nothing sent yet) before it is closed. */
  private readonly idleTimeoutMs: number;
  private headerSweep: NodeJS.Timeout | undefined;
  headersTimeoutMs: number;
  /** The request head limit for new connections (the listener's max_request_headers_kb, else the sidecar's option). */
  maxRequestHeadersKb: number;
  private readonly resolution: Resolution = { route: undefined, cluster: '', metrics: undefined, error: undefined };
  /** Reused per request: what the header pass found (Host, whether a body follows). */
  private readonly head: RequestHeadInfo = { host: undefined, hasBody: false };
  /** Undefined until config names a route table for this listener. */
  table: RouteTable | undefined;
  /** The first config from the control plane has been applied (until then requests wait for it). */
  private hasConfig = false;
  /** Requests that arrived before the first config, in arrival order. */
  private waiting: Array<() => void> = [];

  constructor(options: OutboundOptions, manager: ClusterManager, dispatch: Dispatch, metrics: DataPlaneMetrics) {
    this.options = options;
    this.manager = manager;
    this.dispatch = dispatch;
    this.metrics = metrics;
    this.scope = { metrics, draining: false };
    this.headersTimeoutMs = options.requestHeadersTimeoutMs;
    this.maxRequestHeadersKb = options.maxRequestHeadersKb;
    this.setHeadersTimeout(options.requestHeadersTimeoutMs);
    this.h2 = http2.createServer({ maxSessionMemory: 32 });
    this.h2.on('stream', (stream, headers, flags) => this.onH2Stream(stream, headers, flags));
    logSessionErrors(this.h2, log, 'outbound');
    this.idleTimeoutMs = options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    closeIdleSessions(this.h2, this.idleTimeoutMs);
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.onConnection(socket));
    this.idle = new IdleSweeper(this.sockets, this.idleTimeoutMs);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo | null)?.port ?? this.options.port;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  get draining(): boolean {
    return this.scope.draining;
  }

  /** The request-headers timeout: a head not complete this long after it began gets 408 (one sweep, at most twice a timeout late). */
  setHeadersTimeout(ms: number): void {
    if (ms === this.headersTimeoutMs && this.headerSweep !== undefined) return;
    this.headersTimeoutMs = ms;
    clearInterval(this.headerSweep);
    this.headerSweep = setInterval(() => this.sweepHeaders(), Math.max(10, Math.min(1000, ms)));
    this.headerSweep.unref();
  }

  /**
   * Decided after this event-loop turn's I/O (setImmediate runs after the poll phase): timers run before I/O, so once
   * the process was held past the timeout (a GC pause, a starved CPU), the rest of a head that came meanwhile is read
   * before the head is judged late.
   */
  private sweepHeaders(): void {
    setImmediate(() => {
      const now = performance.now();
      for (const c of this.h1) c.sweepHead(now, this.headersTimeoutMs);
    });
  }

  private onConnection(socket: net.Socket): void {
    this.sockets.add(socket);
    this.lastConnectionAt = performance.now();
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.lastConnectionAt = performance.now();
      abandonExchanges(socket);
    });
    socket.on('error', () => {});
    if (this.scope.draining) {
      socket.destroy();
      return;
    }
    this.sniff(socket, undefined);
  }

  /**
   * Sniffs the first bytes (`early`: some already read): the HTTP/2 connection preface means h2c with prior
   * knowledge, else HTTP/1.1.
   */
  private sniff(socket: net.Socket, early: Buffer | undefined): void {
    let head: Buffer | undefined;
    // Until the first bytes decide the protocol: a silent or half-closed client is dropped.
    const onSilent = (): void => {
      socket.destroy();
    };
    // A connection that says nothing yet is idle, not slow (clients open spare connections ahead of need): it gets the
    // idle timeout, as in Envoy; the header timeout starts with the first bytes of a request.
    // Decided after the turn's I/O (setIdleTimeout): first bytes that came while the process was held past it are read.
    setIdleTimeout(socket, this.idleTimeoutMs, onSilent);
    socket.once('end', onSilent);
    const onData = (chunk: Buffer): void => {
      head = head === undefined ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, PREFACE.length);
      const maybeH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (maybeH2 && head.length < PREFACE.length) return; // read more
      socket.off('data', onData);
      socket.off('end', onSilent);
      clearIdleTimeout(socket);
      socket.pause();
      if (maybeH2) {
        // The HTTP/2 session takes bytes already buffered on the socket before it consumes the handle.
        socket.unshift(head);
        giveToH2Server(this.h2, socket, undefined);
      } else {
        const conn = new DownstreamConnection(socket, this, this.maxRequestHeadersKb * 1024);
        this.h1.add(conn);
        socket.on('close', () => this.h1.delete(conn));
        conn.start(head);
      }
    };
    socket.on('data', onData);
    if (early !== undefined && early.length > 0) onData(early);
  }

  /**
   * CONNECT to a Service's `host:port` (what Node's fetch sends through HTTP_PROXY even for http:// URLs): answered
   * 200, after which the connection carries plain HTTP/1.1 or h2c requests, routed as on any connection (by their
   * own Host). A host with no route gets the usual 404; TLS inside the tunnel is not looked into (400).
   */
  connect(conn: DownstreamConnection): void {
    markActive(conn.socket, performance.now());
    const target = conn.head.url;
    const r = this.resolve(target, '/', new RawHeaderSource(conn.head.rawHeaders));
    if (r.error !== undefined) {
      this.localH1(conn, r.error);
      return;
    }
    // After the parse that handed the head on has returned, so the bytes after it are kept for the tunnel.
    process.nextTick(() => {
      const socket = conn.socket;
      if (socket.destroyed) return;
      const rest = conn.detach();
      this.h1.delete(conn);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');
      this.sniff(socket, rest);
    });
  }

  /**
   * Virtual host → route → cluster; fills this.resolution (reused, read at once by the caller). `source` gives the
   * request headers as an object, read only when a route of the virtual host matches on headers.
   */
  private resolve(authority: string, path: string, source: HeaderSource): Resolution {
    const r = this.resolution;
    r.route = undefined;
    r.error = undefined;
    r.cluster = '';
    r.metrics = undefined;
    // A fragment is never part of a request target (RFC 9112 §3.2, RFC 9113 §8.3.1). Forwarded, `/admin#x` would
    // slip past a policy on `/admin` that the app then serves (as Envoy found: it answers 400 too).
    if (path.includes('#')) {
      r.error = fragmentInTarget(path);
      return r;
    }
    const table = this.table;
    const vh = table?.findVirtualHost(authority);
    if (vh === undefined) {
      r.error = isValidAuthority(authority) ? noRoute(authority) : invalidAuthority(authority);
      return r;
    }
    // `OPTIONS *` asks about the server as a whole: it takes the route of "/" and goes on as "*".
    const route = findRoute(vh, path === '*' ? '/' : path, vh.matchesHeaders ? source.headers : NO_HEADERS);
    if (route === undefined) {
      r.error = noPathRoute(authority, path);
      return r;
    }
    r.route = route;
    if (route.action.kind === 'forward') {
      r.cluster = pickCluster(route.action, Math.random());
      const c = this.manager.get(r.cluster);
      if (c === undefined) r.error = noCluster(r.cluster);
      else r.metrics = c.metrics;
    }
    return r;
  }

  /**
   * The first config arrived (with or without a route table for this listener): requests held until now go on, in
   * order. An app that starts before its sidecar has config gets answers, not 404s for Services it cannot see yet.
   */
  configured(): void {
    if (this.hasConfig) return;
    this.hasConfig = true;
    const waiting = this.waiting;
    this.waiting = [];
    for (const go of waiting) go();
  }

  /**
   * Holds a request until the first config, at most `configWaitMs` (then `refuse` answers 503 no_config); refuses
   * at once when MAX_WAITING requests already wait.
   */
  private waitForConfig(go: () => void, refuse: (e: LocalReplyError) => void, gone: () => boolean): void {
    if (this.waiting.length >= MAX_WAITING) {
      refuse(noConfig(0));
      return;
    }
    let done = false;
    const ms = this.options.configWaitMs ?? CONFIG_WAIT_MS;
    // After the turn's I/O (setImmediate runs after the poll phase): once the process was held past the wait, a
    // config that came meanwhile is read first.
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (done) return;
        done = true;
        if (!gone()) refuse(noConfig(ms));
      });
    }, ms);
    this.waiting.push(() => {
      clearTimeout(timer);
      if (done) return;
      done = true;
      if (!gone()) go();
    });
  }

  /** A request head parsed on an HTTP/1.1 connection (DownstreamHost). */
  request(conn: DownstreamConnection): void {
    const startedAt = performance.now();
    markActive(conn.socket, startedAt);
    if (!this.hasConfig) {
      this.waitForConfig(
        () => this.routeH1(conn, startedAt),
        (e) => this.localH1(conn, e),
        () => conn.socket.destroyed,
      );
      return;
    }
    this.routeH1(conn, startedAt);
  }

  private routeH1(conn: DownstreamConnection, startedAt: number): void {
    // One pass over the raw header pairs: an object of them is built only if a route matches on headers.
    const req = conn.head;
    const info = this.head;
    const headers = headerListFromRaw(req.rawHeaders, info);
    let path = req.url;
    let authority = info.host;
    if (info.manyHosts === true) {
      this.localH1(conn, badRequest('more than one Host header (RFC 9112 §3.2): the sidecar cannot tell which Service is meant'));
      return;
    }
    const abs = splitAbsoluteUrl(path);
    if (abs !== undefined) {
      path = abs.emptyPath && req.method === 'OPTIONS' ? '*' : abs.path;
      authority = abs.authority;
    }
    if (authority === undefined || authority === '') {
      this.localH1(conn, badRequest('no Host header and no absolute-form URL: the sidecar cannot tell which Service is meant'));
      return;
    }
    const r = this.resolve(authority, path, new RawHeaderSource(req.rawHeaders));
    if (r.error !== undefined) {
      this.localH1(conn, r.error);
      return;
    }
    const action = (r.route as CompiledRoute).action;
    if (action.kind === 'direct') {
      conn.reply(action.status, 'direct_response', action.body);
      return;
    }
    if (req.upgrade && !info.hasBody) {
      const protocol = tunnelledProtocol(req.rawHeaders);
      if (protocol !== undefined) {
        const handler = new H1Downstream(this.scope, conn, r.metrics as ClusterRequestMetrics, startedAt);
        const hash = requestHash(action, headers, authority, conn.socket, this.options.podIp);
        const upgrade = { cluster: r.cluster, method: req.method, path, authority, headers, protocol, hash, timeoutMs: action.timeoutMs ?? 0 };
        startUpgrade(this.manager, conn, upgrade, handler);
        return;
      }
    }
    const body = info.hasBody ? conn.requestBody() : null;
    const request: DispatchRequest = {
      cluster: r.cluster,
      method: req.method,
      path,
      authority,
      headers,
      body,
      replay: body?.keeper,
      hash: requestHash(action, headers, authority, conn.socket, this.options.podIp),
      wantsH2: false,
      timeoutMs: action.timeoutMs ?? 0,
    };
    const handler = new H1Downstream(this.scope, conn, r.metrics as ClusterRequestMetrics, startedAt);
    this.dispatch(request, handler);
  }

  localError(reason: LocalReason): void {
    this.metrics.localError(reason);
  }

  private localH1(conn: DownstreamConnection, e: LocalReplyError): void {
    this.metrics.localError(e.reason);
    conn.reply(e.status, e.reason, e.message);
  }

  private onH2Stream(stream: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, flags: number): void {
    const startedAt = performance.now();
    stream.on('error', () => {});
    if (!this.hasConfig) {
      const ct = h['content-type'];
      this.waitForConfig(
        () => this.routeH2(stream, h, flags, startedAt),
        (e) => {
          this.metrics.localError(e.reason);
          replyH2(stream, e.status, e.reason, e.message, ct !== undefined && ct.startsWith('application/grpc'));
        },
        () => stream.destroyed,
      );
      return;
    }
    // A stream already reset, or whose session already ended (nghttp2 ends one that resets too many streams at
    // once, and its last streams still arrive here): nobody is waiting, so nothing is dialled for it.
    if (stream.destroyed || stream.session === undefined || stream.session.destroyed) return;
    this.routeH2(stream, h, flags, startedAt);
  }

  private routeH2(stream: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, flags: number, startedAt: number): void {
    const ct = h['content-type'];
    const grpc = ct !== undefined && ct.startsWith('application/grpc');
    const authority = (h[':authority'] ?? h['host']) as string | undefined;
    const path = (h[':path'] as string | undefined) ?? '/';
    // The same limit as an HTTP/1.1 head (the path and every name and value), so a head the app would refuse over
    // HTTP/1.1 is not carried over HTTP/2 either.
    if (headBytes(h) > this.maxRequestHeadersKb * 1024) {
      const e = headersTooLarge(this.maxRequestHeadersKb);
      this.metrics.localError(e.reason);
      replyH2(stream, e.status, e.reason, e.message, grpc);
      return;
    }
    if (h[':method'] === 'CONNECT') {
      const e = badRequest('CONNECT over HTTP/2 is not supported; send plain HTTP/2 requests to the Service');
      this.metrics.localError(e.reason);
      replyH2(stream, e.status, e.reason, e.message, grpc);
      return;
    }
    if (authority === undefined || authority === '') {
      const e = badRequest('no :authority or host header');
      this.metrics.localError(e.reason);
      replyH2(stream, e.status, e.reason, e.message, grpc);
      return;
    }
    const r = this.resolve(authority, path, new H2HeaderSource(h, authority));
    if (r.error !== undefined) {
      this.metrics.localError(r.error.reason);
      replyH2(stream, r.error.status, r.error.reason, r.error.message, grpc);
      return;
    }
    const action = (r.route as CompiledRoute).action;
    if (action.kind === 'direct') {
      replyH2(stream, action.status, 'direct_response', action.body, grpc);
      return;
    }
    const headers = headerListFromObject(h as Headers);
    const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    const request: DispatchRequest = {
      cluster: r.cluster,
      method: (h[':method'] as string | undefined) ?? 'GET',
      path,
      authority,
      headers,
      body: endStream ? null : stream,
      replay: endStream ? undefined : keepPushed(stream),
      hash: requestHash(action, headers, authority, stream.session?.socket, this.options.podIp),
      wantsH2: grpc,
      timeoutMs: action.timeoutMs ?? 0,
    };
    const handler = new H2Downstream(this.scope, stream, r.metrics as ClusterRequestMetrics, startedAt, grpc);
    this.dispatch(request, handler);
  }

  /** When a client connection last opened or closed (performance.now()). */
  lastConnectionAt = Number.NEGATIVE_INFINITY;

  /** Client connections open now. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Stops accepting, lets requests in flight finish (responses say `connection: close`) for up to `ms`. */
  async close(ms: number): Promise<void> {
    this.scope.draining = true;
    this.idle.stop();
    this.configured();
    clearInterval(this.headerSweep);
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of this.h1) c.closeIfIdle();
    // HTTP/2 sessions get a GOAWAY through the h2 server's close.
    this.h2.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/** The ring-hash key: the value of the route's hash header (Host is carried as the authority). */
function hashValue(name: string, headers: HeaderList, authority: string): string | undefined {
  const n = name.toLowerCase();
  return n === 'host' ? authority : headerListValue(headers, n);
}

/** What a ring-hash balancer hashes for this request: the route's header, or the caller (affinityKey); none otherwise. */
function requestHash(
  action: { readonly hashHeader?: string; readonly hashSourceIp?: boolean },
  headers: HeaderList,
  authority: string,
  socket: { readonly remoteAddress?: string | undefined } | undefined,
  podIp: string | undefined,
): string | undefined {
  if (action.hashHeader !== undefined) return hashValue(action.hashHeader, headers, authority);
  return action.hashSourceIp === true ? affinityKey(socket?.remoteAddress, podIp) : undefined;
}

/** Bytes of an HTTP/2 request head's names and values (pseudo-headers included), as an HTTP/1.1 head is counted. */
function headBytes(h: http2.IncomingHttpHeaders): number {
  let n = 0;
  for (const name in h) {
    const v = h[name];
    if (v === undefined) continue;
    if (typeof v === 'string') n += name.length + v.length;
    else for (const one of v) n += name.length + one.length;
  }
  return n;
}
