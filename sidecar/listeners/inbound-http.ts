// The inbound L7 path: every HTTP/1.1 request (and, through inbound-h2.ts, every HTTP/2 stream) is checked, then forwarded to the app.
import { endAfterFlush } from '../http1/close-after-flush.ts';
import type http from 'node:http';
import { nodeHttp } from '../builtins.ts';
import net from 'node:net';
import { authorize, type Caller, type InboundPolicy } from '../authz/index.ts';
import { normalizeTarget } from '../authz/path.ts';
import type { DataPlaneMetrics } from '../telemetry/metrics.ts';
import { EndpointPool, headerListFromRaw } from '../upstream/index.ts';
import type { ConnectionGauge, DispatchController, DispatchHandler, DispatchRequest, Headers, ProxyHeader, RequestHeadInfo } from '../upstream/index.ts';
import { EndpointLoad } from '../lb/index.ts';
import type { LocalReplyError } from './errors.ts';
import { logger } from '../log.ts';
import { InboundH2Handler } from './inbound-h2.ts';
import { localReplyText } from '../http1/response-head.ts';
import { COMPLETE, NEED_MORE, ResponseReader } from '../http1/response-reader.ts';
import type { FeedOutcome, ResponseSink } from '../http1/response-reader.ts';
import { readUpgradeAnswer } from '../http1/upgrade-answer.ts';
import { localReasonOf, replyH1 } from './local-reply.ts';

const log = logger('authz');

/** The header that tells the app which SPIFFE ID the sidecar verified (removed when the caller has none). */
export const PEER_IDENTITY_HEADER = 'x-skein-peer-identity';

const kConn = Symbol('skein.inbound.conn');
interface ConnInfo {
  readonly appPort: number;
  readonly caller: Caller;
  readonly source: string | undefined;
}
type WithConn = { [kConn]?: ConnInfo };

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const XFCC = 'x-forwarded-client-cert';

export interface InboundHttpOptions {
  readonly appHost: string;
  /** The current policy for an app port (looked up per request, so a config change applies to open connections). */
  readonly policyFor: (port: number) => InboundPolicy;
  readonly metrics: DataPlaneMetrics;
  /** The largest request head accepted, in KiB (default 60, as on the outbound side). */
  readonly maxRequestHeadersKb?: number;
  /** A request head (or the first bytes that tell HTTP/1.1 from HTTP/2) must arrive within this (ms); default 10 s. */
  readonly headersTimeoutMs?: number;
  /** A connection that has sent nothing is closed after this (ms); default 5 min, as the outbound side's idle timeout. */
  readonly idleTimeoutMs?: number;
}

const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** Connections already given a local answer and closing (clientError): nothing more on them goes to the app. */
const answered = new WeakSet<net.Socket>();

/**
 * A request node's parser refused, or whose head came too slowly: answered as the outbound side would (431, 408 or
 * 400, with x-skein-reason), then closed.
 */
function clientError(err: NodeJS.ErrnoException, socket: net.Socket, limitKb: number, headersTimeoutMs: number): void {
  // node's parser stays on the socket through the linger below: a head completed then must not reach the app.
  answered.add(socket);
  if (socket.writable && (socket as net.Socket & { _httpMessage?: unknown })._httpMessage == null) {
    let reply: [number, string, string];
    if (err.code === 'HPE_HEADER_OVERFLOW') reply = [431, 'headers_too_large', `request headers too large: over ${limitKb} KiB`];
    else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') reply = [408, 'header_timeout', `request headers not received within ${headersTimeoutMs} ms`];
    else reply = [400, 'bad_request', `malformed HTTP request: ${err.code ?? err.message}`];
    endAfterFlush(socket, localReplyText(reply[0], 'x-skein-reason', reply[1], reply[2], 'close', true));
    return;
  }
  socket.destroy();
}

/** Describes the caller for logs and 403 bodies. */
function who(caller: Caller): string {
  return caller.principal ?? 'an unauthenticated (plaintext) caller';
}

export class InboundHttpHandler {
  private readonly options: InboundHttpOptions;
  private readonly server: http.Server;
  private readonly h2: InboundH2Handler;
  /**
   * Keep-alive connections to the app per app port: the same HTTP/1.1 pool as the outbound side's (llhttp on raw
   * sockets), so both paths frame, retry and answer errors alike.
   */
  private readonly pools = new Map<number, EndpointPool>();
  private readonly head: RequestHeadInfo = { host: undefined, hasBody: false };

  constructor(options: InboundHttpOptions) {
    this.options = options;
    this.h2 = new InboundH2Handler({ appHost: options.appHost, policyFor: options.policyFor, metrics: options.metrics, identityHeader: PEER_IDENTITY_HEADER });
    // Request heads as large as the outbound side accepts (Envoy's 60 KiB default), not node's 16 KiB: adding a
    // policy must not break large cookies or tokens.
    // requestTimeout 0 would make node's headersTimeout 0 as well (no limit): it is set on its own, and checked every
    // second rather than node's 30 s.
    const headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
    this.server = nodeHttp.createServer(
      {
        requestTimeout: 0,
        headersTimeout: headersTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, headersTimeoutMs),
        keepAliveTimeout: 60_000,
        maxHeaderSize: (options.maxRequestHeadersKb ?? 60) * 1024,
      },
      (req, res) => this.request(req, res),
    );
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => clientError(err, socket, options.maxRequestHeadersKb ?? 60, headersTimeoutMs));
    // The server never listens (connections are handed to it); node starts tracking connections for headersTimeout on
    // 'listening', so it is told it listens.
    this.server.emit('listening');
    this.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.upgrade(req, socket, head));
  }

  /** Takes a connection after its PROXY header; `rest` holds bytes already read past it. */
  handle(stream: net.Socket, appPort: number, header: ProxyHeader | undefined, rest: Buffer, caller: Caller, firstByteAt?: number): void {
    const n = Math.min(rest.length, H2_PREFACE.length);
    const maybeH2 = rest.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (maybeH2 && rest.length < H2_PREFACE.length) {
      // HTTP clients speak first: wait for enough bytes to tell HTTP/2 prior knowledge from HTTP/1.1, for the idle
      // timeout while nothing came (a spare connection), and for the header timeout from the first byte on (one
      // deadline, however the bytes trickle in).
      const started = rest.length === 0 ? undefined : (firstByteAt ?? performance.now());
      const ms = started === undefined ? (this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS) : started + (this.options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS) - performance.now();
      const timer = setTimeout(() => stream.destroy(), Math.max(0, ms));
      timer.unref();
      const onClose = (): void => clearTimeout(timer);
      stream.once('close', onClose);
      stream.once('data', (chunk: Buffer) => {
        clearTimeout(timer);
        stream.off('close', onClose);
        stream.pause();
        this.handle(stream, appPort, header, Buffer.concat([rest, chunk]), caller, started ?? performance.now());
      });
      stream.resume();
      return;
    }
    if (maybeH2) {
      // HTTP/2 (gRPC): judged per stream, like HTTP/1.1 requests.
      this.h2.handle(stream, appPort, header?.sourceAddress, rest, caller);
      return;
    }
    (stream as WithConn)[kConn] = { appPort, caller, source: header?.sourceAddress };
    this.server.emit('connection', stream);
    // The HTTP server reads the socket's handle directly; bytes read before must be fed as an event.
    stream.emit('data', rest);
    stream.resume();
  }

  private request(req: http.IncomingMessage, res: http.ServerResponse): void {
    // Already answered (408 and closing): read and drop the rest, and let the linger close the socket, so no reset
    // can destroy the answer before the client reads it.
    if (answered.has(req.socket)) {
      req.resume();
      return;
    }
    const info = (req.socket as WithConn)[kConn];
    if (info === undefined) {
      res.destroy();
      return;
    }
    countInbound(this.options.metrics, info.appPort, res);
    const method = req.method ?? 'GET';
    // As on the outbound side (and Envoy): chunked is the only transfer coding a request may use. node:http reads
    // `gzip, chunked` as chunked, and the coded body would go on as if it were plain.
    const te = req.headers['transfer-encoding'];
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
      req.resume();
      replyH1(res, 501, 'bad_request', `Transfer-Encoding "${te.slice(0, 100)}" is not supported: send "chunked" alone or Content-Length`, true);
      return;
    }
    // Judged and forwarded normalised: `//admin`, `/x/../admin` or `http://host/admin` cannot slip past `/admin`.
    const path = normalizeTarget(req.url ?? '/');
    const d = authorize(this.options.policyFor(info.appPort), info.caller, { method, path });
    if (!d.allowed) {
      this.options.metrics.authzDenied.labels(d.service).inc();
      log.warn('request denied by authorization policy', { peer: who(info.caller), service: d.service, method, path, reason: d.reason, source: info.source });
      req.resume();
      replyH1(res, 403, 'rbac_denied', `RBAC: access denied: ${who(info.caller)} may not ${method} ${path} on ${d.service} (${d.reason})`, false);
      return;
    }
    const head = this.head;
    const headers = headerListFromRaw(req.rawHeaders, head);
    // The identity headers are ours alone: whatever the caller sent under those names is dropped (Istio sanitises
    // x-forwarded-client-cert too; apps moving from Istio may trust it).
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] === PEER_IDENTITY_HEADER || headers[i] === XFCC) {
        headers.splice(i, 2);
        i -= 2;
      }
    }
    if (info.caller.principal !== undefined) headers.push(PEER_IDENTITY_HEADER, info.caller.principal);
    const pool = this.pool(info.appPort);
    const request: DispatchRequest = {
      cluster: `inbound|${info.appPort}||`,
      method,
      path,
      // An HTTP/1.0 caller may send no Host: the app's own address stands in, as an HTTP client would send it.
      authority: head.host ?? pool.dialTarget,
      headers,
      body: head.hasBody ? req : null,
      replay: undefined,
      hash: undefined,
      wantsH2: false,
      timeoutMs: 0,
    };
    const exchange = new AppExchange(res, info.appPort);
    res.on('close', () => exchange.closed());
    pool.request(request, exchange, false);
  }

  /**
   * An Upgrade request (WebSocket): authorized like any request, then sent to the app on a connection of its own
   * and the two joined; the app's answer (101 or not) goes back as it is. An h2c upgrade would turn the connection
   * into HTTP/2 streams this server does not see one by one, so it is judged per connection, as a TCP stream is.
   */
  private upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    if (answered.has(socket)) return; // already answered and closing (see request)
    const info = (socket as WithConn)[kConn];
    if (info === undefined) {
      socket.destroy();
      return;
    }
    const method = req.method ?? 'GET';
    const path = normalizeTarget(req.url ?? '/');
    const h2c = String(req.headers.upgrade ?? '').toLowerCase().split(',').some((p) => p.trim() === 'h2c');
    const d = authorize(this.options.policyFor(info.appPort), info.caller, h2c ? undefined : { method, path });
    if (!d.allowed) {
      this.options.metrics.authzDenied.labels(d.service).inc();
      log.warn('upgrade request denied by authorization policy', { peer: who(info.caller), service: d.service, method, path, reason: d.reason, source: info.source });
      const message = `RBAC: access denied: ${who(info.caller)} may not ${method} ${path} on ${d.service} (${d.reason})`;
      socket.end(localReplyText(403, 'x-skein-reason', 'rbac_denied', message, 'close', method !== 'HEAD'), 'latin1');
      return;
    }
    let text = `${method} ${path} HTTP/1.1\r\n`;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      const lower = name.toLowerCase();
      if (lower === PEER_IDENTITY_HEADER || lower === XFCC) continue;
      text += `${name}: ${raw[i + 1] as string}\r\n`;
    }
    if (info.caller.principal !== undefined) text += `${PEER_IDENTITY_HEADER}: ${info.caller.principal}\r\n`;
    const app = net.connect({ host: this.options.appHost, port: info.appPort, noDelay: true, allowHalfOpen: true });
    new AppUpgrade(socket, app, head, info.appPort, method === 'HEAD').start(`${text}\r\n`);
  }

  private pool(port: number): EndpointPool {
    let p = this.pools.get(port);
    if (p === undefined) {
      const target = { address: this.options.appHost, port, inboundPort: undefined, sourceIp: this.options.appHost, connectTimeoutMs: APP_CONNECT_TIMEOUT_MS };
      p = new EndpointPool(target, new EndpointLoad(), NO_GAUGE);
      this.pools.set(port, p);
    }
    return p;
  }

  close(): void {
    this.h2.close();
    this.server.closeAllConnections();
    this.server.close();
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
  }
}

/**
 * Counts a request the inbound side answered, once its response is complete: skein_requests_total and the duration
 * under direction="inbound", cluster `inbound|<port>||`; an answer of our own also in skein_local_errors_total.
 */
function countInbound(metrics: DataPlaneMetrics, appPort: number, res: http.ServerResponse): void {
  const started = performance.now();
  res.once('finish', () => {
    metrics.inbound(appPort).observe(res.statusCode, (performance.now() - started) / 1000);
    const reason = localReasonOf(res);
    if (reason !== undefined) metrics.localError(reason);
  });
}

/** How long a connection to the app may take (the app is local: a refusal comes at once; a hung accept does not). */
const APP_CONNECT_TIMEOUT_MS = 10_000;

/** Connections to the app are not counted per cluster (skein_upstream_connections is outbound). */
const NO_GAUGE: ConnectionGauge = { inc() {}, dec() {}, reused() {} };

/** One request to the app: the pool's handler, writing the app's response to the caller's ServerResponse. */
class AppExchange implements DispatchHandler {
  private readonly res: http.ServerResponse;
  private readonly appPort: number;
  private controller: DispatchController | undefined;
  private done = false;

  constructor(res: http.ServerResponse, appPort: number) {
    this.res = res;
    this.appPort = appPort;
  }

  onRequestStart(controller: DispatchController): void {
    this.controller = controller;
    if (this.done) controller.abort();
  }

  onResponseStart(status: number, headers: Headers): void {
    // An answer before the whole request arrived (an early 413 to an upload): the connection closes after it, as in
    // Envoy. The pool stops sending the request body, so the caller's connection must not be reused meanwhile.
    if (!this.res.req.complete) this.res.shouldKeepAlive = false;
    // The caller is another sidecar's HTTP/1.1 pool, sent no trailers: none is announced (node refuses a Trailer
    // header on a response it does not chunk).
    delete headers['trailer'];
    try {
      this.res.writeHead(status, headers as http.OutgoingHttpHeaders);
    } catch (err) {
      // node:http refused the head (the parser should have refused it first): a 502, never a throw from here.
      this.done = true;
      this.controller?.abort();
      replyH1(this.res, 502, 'upstream_protocol_error', `upstream protocol error: app port ${this.appPort}: the app's response head cannot be relayed: ${(err as Error).message}`, true);
    }
  }

  onResponseData(chunk: Buffer): boolean {
    if (this.done) return true;
    if (this.res.write(chunk)) return true;
    this.res.once('drain', () => this.controller?.resume());
    return false;
  }

  onResponseEnd(): void {
    if (this.done) return;
    this.done = true;
    this.res.end();
  }

  onResponseError(e: LocalReplyError): void {
    if (this.done) return;
    this.done = true;
    const cause = e.cause as NodeJS.ErrnoException | undefined;
    const code = cause?.code ?? e.code;
    log.debug('app request failed', { port: this.appPort, code, reason: e.reason });
    if (this.res.headersSent) {
      this.res.destroy();
      return;
    }
    const port = `app port ${this.appPort}`;
    switch (e.reason) {
      case 'upstream_connect_error':
        replyH1(this.res, 503, e.reason, `upstream connect error: ${code} ${port}`, true);
        return;
      case 'upstream_reset':
        replyH1(this.res, 503, e.reason, `upstream reset: ${code} ${port} (the app closed the connection before a full response)`, true);
        return;
      case 'upstream_protocol_error':
        replyH1(this.res, 502, e.reason, `upstream protocol error: ${code} ${port} (${(cause?.message ?? e.message).replace('the upstream response', "the app's response")})`, true);
        return;
      default:
        replyH1(this.res, e.status, e.reason, `${e.message} (${port})`, true);
    }
  }

  /** The caller's response closed: abandon the app request if it is still running. */
  closed(): void {
    if (this.done || this.res.writableFinished) return;
    this.done = true;
    this.controller?.abort();
  }
}

/**
 * One Upgrade request on its way to the app. Nothing more of the caller's goes to the app until the app answers 101;
 * then the connections are joined (half-closes pass through, an error on either ends both). An app that declines has
 * its response relayed and the connection closes: piping on would let later requests past the per-request checks.
 */
class AppUpgrade implements ResponseSink {
  private readonly socket: net.Socket;
  private readonly app: net.Socket;
  private readonly early: Buffer;
  private readonly appPort: number;
  private readonly noBody: boolean;
  private buffered: Buffer | undefined;
  private reader: ResponseReader | undefined;
  /** Some byte of the app's answer reached the caller (a local 503 is then too late). */
  private answered = false;
  private appEnded = false;
  private readonly onAppData = (chunk: Buffer): void => this.received(chunk);

  constructor(socket: net.Socket, app: net.Socket, early: Buffer, appPort: number, noBody: boolean) {
    this.socket = socket;
    this.app = app;
    this.early = early;
    this.appPort = appPort;
    this.noBody = noBody;
  }

  start(head: string): void {
    const { socket, app } = this;
    app.on('data', this.onAppData);
    app.once('end', () => {
      this.appEnded = true;
      const reader = this.reader;
      if (reader !== undefined) this.settle(reader, reader.finish());
      else if (!this.answered) socket.destroy();
    });
    app.on('error', (err: NodeJS.ErrnoException) => {
      log.debug('app upgrade connection failed', { port: this.appPort, code: err.code });
      if (this.answered || socket.destroyed) {
        socket.destroy();
        return;
      }
      this.answered = true;
      const message = `upstream connect error: ${err.code ?? 'error'} app port ${this.appPort}`;
      socket.end(localReplyText(503, 'x-skein-reason', 'upstream_connect_error', message, 'close', !this.noBody), 'latin1');
    });
    app.on('close', () => {
      if (this.answered && !this.appEnded) socket.destroy();
    });
    socket.on('error', () => app.destroy());
    socket.on('close', () => app.destroy());
    app.write(head, 'latin1');
  }

  private received(chunk: Buffer): void {
    const reader = this.reader;
    if (reader !== undefined) {
      this.relay(reader, chunk);
      return;
    }
    const buf = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    const answer = readUpgradeAnswer(buf);
    if (answer.kind === 'more') {
      this.buffered = buf;
      return;
    }
    this.buffered = undefined;
    this.answered = true;
    if (answer.kind === 'overflow') {
      this.socket.destroy();
      this.app.destroy();
      return;
    }
    if (answer.kind === 'response') {
      const r = new ResponseReader();
      r.begin(this, this.noBody);
      this.reader = r;
      this.relay(r, answer.response);
      return;
    }
    const { socket, app } = this;
    app.off('data', this.onAppData);
    socket.write(answer.head);
    if (answer.rest.length > 0) socket.write(answer.rest);
    if (this.early.length > 0) app.write(this.early);
    socket.pipe(app);
    app.pipe(socket);
  }

  /** Passes the declined answer on as it came; when it is complete (or broken) the connection closes. */
  private relay(reader: ResponseReader, chunk: Buffer): void {
    this.socket.write(chunk);
    this.settle(reader, reader.feed(chunk));
  }

  private settle(reader: ResponseReader, out: FeedOutcome): void {
    if (out === NEED_MORE) return;
    this.reader = undefined;
    this.app.off('data', this.onAppData);
    this.app.destroy();
    reader.free();
    if (out === COMPLETE) this.socket.end();
    else this.socket.destroy();
  }

  onHead(): void {}

  onBody(): boolean {
    return true;
  }
}
