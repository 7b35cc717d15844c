// The inbound L7 path: every HTTP/1.1 request (and, through inbound-h2.ts, every HTTP/2 stream) is checked, then forwarded to the app.
import type http from 'node:http';
import { nodeHttp } from '../builtins.ts';
import net from 'node:net';
import type * as Undici from 'undici';
import type { Dispatcher, Pool } from 'undici';
import { authorize, type Caller, type InboundPolicy } from '../authz/index.ts';
import { normalizeTarget } from '../authz/path.ts';
import type { DataPlaneMetrics } from '../telemetry/metrics.ts';
import { guardWrites, headerListFromRaw, stripHopByHop } from '../upstream/index.ts';
import type { Headers, ProxyHeader, RequestHeadInfo } from '../upstream/index.ts';
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

const H2_PREFACE = Buffer.from('PRI ');
const XFCC = 'x-forwarded-client-cert';

export interface InboundHttpOptions {
  readonly appHost: string;
  /** The current policy for an app port (looked up per request, so a config change applies to open connections). */
  readonly policyFor: (port: number) => InboundPolicy;
  readonly metrics: DataPlaneMetrics;
  /** The largest request head accepted, in KiB (default 60, as on the outbound side). */
  readonly maxRequestHeadersKb?: number;
}

/** A request node's parser refused: answered as the outbound side would (431 or 400, with x-skein-reason), then closed. */
function clientError(err: NodeJS.ErrnoException, socket: net.Socket, limitKb: number): void {
  if (socket.writable && (socket as net.Socket & { _httpMessage?: unknown })._httpMessage == null) {
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const message = tooLarge ? `request headers too large: over ${limitKb} KiB` : `malformed HTTP request: ${err.code ?? err.message}`;
    socket.end(localReplyText(tooLarge ? 431 : 400, 'x-skein-reason', tooLarge ? 'headers_too_large' : 'bad_request', message, 'close', true), 'latin1');
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
  /** Keep-alive connections to the app per app port (undici, one request per connection at a time). */
  private readonly pools = new Map<number, Pool>();
  private readonly head: RequestHeadInfo = { host: undefined, hasBody: false };
  /**
   * undici, loaded by the first connection that needs this path: it is a few MB of heap that a sidecar without L7
   * authorization policies never uses.
   */
  private undici: typeof Undici | undefined;
  /** undici's own connector (plain TCP to the app), wrapped by connector(). */
  private connect: Undici.buildConnector.connector | undefined;
  private loading: Promise<void> | undefined;

  constructor(options: InboundHttpOptions) {
    this.options = options;
    this.h2 = new InboundH2Handler({ appHost: options.appHost, policyFor: options.policyFor, metrics: options.metrics, identityHeader: PEER_IDENTITY_HEADER });
    // Request heads as large as the outbound side accepts (Envoy's 60 KiB default), not node's 16 KiB: adding a
    // policy must not break large cookies or tokens.
    this.server = nodeHttp.createServer(
      { requestTimeout: 0, keepAliveTimeout: 60_000, maxHeaderSize: (options.maxRequestHeadersKb ?? 60) * 1024 },
      (req, res) => this.request(req, res),
    );
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => clientError(err, socket, options.maxRequestHeadersKb ?? 60));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.upgrade(req, socket, head));
  }

  /** Takes a connection after its PROXY header; `rest` holds bytes already read past it. */
  handle(stream: net.Socket, appPort: number, header: ProxyHeader | undefined, rest: Buffer, caller: Caller): void {
    if (rest.length < H2_PREFACE.length) {
      // HTTP clients speak first: wait for enough bytes to tell HTTP/2 prior knowledge from HTTP/1.1.
      stream.once('data', (chunk: Buffer) => {
        stream.pause();
        this.handle(stream, appPort, header, Buffer.concat([rest, chunk]), caller);
      });
      stream.resume();
      return;
    }
    if (rest.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) {
      // HTTP/2 (gRPC): judged per stream, like HTTP/1.1 requests.
      this.h2.handle(stream, appPort, header?.sourceAddress, rest, caller);
      return;
    }
    if (this.undici === undefined) {
      stream.pause();
      this.loading ??= import('undici').then((m) => {
        this.undici = m;
      });
      this.loading.then(
        () => this.handle(stream, appPort, header, rest, caller),
        (err: unknown) => {
          log.error('cannot load the HTTP client for the inbound L7 path', { error: String(err) });
          stream.destroy();
        },
      );
      return;
    }
    (stream as WithConn)[kConn] = { appPort, caller, source: header?.sourceAddress };
    this.server.emit('connection', stream);
    // The HTTP server reads the socket's handle directly; bytes read before must be fed as an event.
    stream.emit('data', rest);
    stream.resume();
  }

  private request(req: http.IncomingMessage, res: http.ServerResponse): void {
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
    if (head.host !== undefined) headers.push('host', head.host);
    const options: Dispatcher.DispatchOptions = { method, path, headers, body: head.hasBody ? req : null };
    const exchange = new AppExchange(res, info.appPort, head.hasBody ? undefined : (ex) => this.sendFresh(info.appPort, options, ex));
    res.on('close', () => exchange.closed());
    this.pool(info.appPort).dispatch(options, exchange);
  }

  /** Sends a request on a connection of its own, closed after it (the pool could hand out one the app just closed). */
  private sendFresh(port: number, options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    const { Client } = this.undici as typeof Undici;
    const client = new Client(this.origin(port), { keepAliveTimeout: 1, headersTimeout: 0, bodyTimeout: 0, connect: this.connector() });
    client.dispatch(options, handler);
    client.close().catch(() => {});
  }

  /**
   * An Upgrade request (WebSocket): authorized like any request, then sent to the app on a connection of its own
   * and the two joined; the app's answer (101 or not) goes back as it is. An h2c upgrade would turn the connection
   * into HTTP/2 streams this server does not see one by one, so it is judged per connection, as a TCP stream is.
   */
  private upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
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

  private pool(port: number): Pool {
    let p = this.pools.get(port);
    if (p === undefined) {
      const { Pool } = this.undici as typeof Undici;
      p = new Pool(this.origin(port), { pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 0, bodyTimeout: 0, allowH2: false, connect: this.connector() });
      this.pools.set(port, p);
    }
    return p;
  }

  /**
   * undici's connector with writes guarded (see guardWrites): an app that answers an upload early (a 413) and closes
   * with the body unread resets the connection, and undici's next body write would otherwise destroy the socket with
   * that answer unread. Refused writes go nowhere; undici reads the answer and ends the exchange with it.
   */
  private connector(): Undici.buildConnector.connector {
    const base = (this.connect ??= (this.undici as typeof Undici).buildConnector({}));
    return (options, callback) =>
      base(options, (err, socket) => {
        if (socket !== null) guardWrites(socket, ignoreRefusal);
        (callback as (e: Error | null, s: net.Socket | null) => void)(err, socket);
      });
  }

  private origin(port: number): string {
    const host = this.options.appHost.includes(':') ? `[${this.options.appHost}]` : this.options.appHost;
    return `http://${host}:${port}`;
  }

  close(): void {
    this.h2.close();
    this.server.closeAllConnections();
    this.server.close();
    for (const p of this.pools.values()) p.destroy().catch(() => {});
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

/** undici writes on into the guard (nowhere) until the app's answer ends the exchange. */
function ignoreRefusal(): void {}

/** undici's errors for a connection the app closed before answering (the keep-alive race). */
const CLOSED_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);
/** Errors of a connection that could not be made at all. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);

/** What went wrong with the app's response, in words: its connection closed, or what it sent is not valid HTTP/1.1. */
function appFailure(code: string, err: Error): string {
  if (CLOSED_CODES.has(code) || code === 'UND_ERR_CLOSED') return 'the app closed the connection before a full response';
  return `the app's response is not valid HTTP/1.1: ${err.message}`;
}

/** One request to the app, undici's handler: the response goes straight to the caller's ServerResponse. */
class AppExchange implements Dispatcher.DispatchHandler {
  private readonly res: http.ServerResponse;
  private readonly appPort: number;
  private controller: Dispatcher.DispatchController | undefined;
  private done = false;
  /** Sends the request again (requests without a body, once): see onResponseError. */
  private resend: ((exchange: AppExchange) => void) | undefined;

  constructor(res: http.ServerResponse, appPort: number, resend: ((exchange: AppExchange) => void) | undefined) {
    this.res = res;
    this.appPort = appPort;
    this.resend = resend;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.done) controller.abort(new Error('the caller went away'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[]>): void {
    // Informational responses (102, 103 Early Hints) are not relayed, as on the other paths: the final one follows.
    if (status < 200) return;
    // An answer before the whole request arrived (an early 413 to an upload): the connection closes after it, as in
    // Envoy. undici stops the request body, which ends the caller's connection, so it must not be reused meanwhile.
    if (!this.res.req.complete) this.res.shouldKeepAlive = false;
    this.res.writeHead(status, stripHopByHop(headers as Headers) as http.OutgoingHttpHeaders);
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      c.pause();
      this.res.once('drain', () => c.resume());
    }
  }

  onResponseEnd(): void {
    this.done = true;
    this.res.end();
  }

  onResponseError(_c: Dispatcher.DispatchController | null, err: Error): void {
    if (this.done) return;
    this.done = true;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    log.debug('app request failed', { port: this.appPort, code });
    if (this.res.headersSent) {
      this.res.destroy();
      return;
    }
    const resend = this.resend;
    if (resend !== undefined && CLOSED_CODES.has(code)) {
      // A kept-alive connection the app closed just as the request went out (its idle timeout): the request never
      // reached it, so it goes once more on a fresh connection, as on the outbound side. Only without a body.
      this.resend = undefined;
      this.done = false;
      resend(this);
      return;
    }
    if (CONNECT_CODES.has(code)) replyH1(this.res, 503, 'upstream_connect_error', `upstream connect error: ${code} app port ${this.appPort}`, true);
    else if (code.startsWith('HPE_') || err.name === 'HTTPParserError')
      replyH1(this.res, 502, 'upstream_protocol_error', `upstream protocol error: ${code === 'error' ? err.name : code} app port ${this.appPort} (${appFailure(code, err)})`, true);
    else replyH1(this.res, 503, 'upstream_reset', `upstream reset: ${code} app port ${this.appPort} (${appFailure(code, err)})`, true);
  }

  /** The caller's response closed: abandon the app request if it is still running. */
  closed(): void {
    if (this.done || this.res.writableFinished) return;
    this.done = true;
    this.controller?.abort(new Error('the caller went away'));
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
