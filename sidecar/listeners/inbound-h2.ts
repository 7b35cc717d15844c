// The inbound L7 path for HTTP/2 (gRPC): every stream is checked against the port's policy, then relayed to the app over h2c.
import http2 from 'node:http2';
import type net from 'node:net';
import { authorize, type Caller, type InboundPolicy } from '../authz/index.ts';
import { normalizeTarget } from '../authz/path.ts';
import type { DataPlaneMetrics } from '../telemetry/metrics.ts';
import { logger } from '../log.ts';
import { grpcMessage, localReasonOf, REASON_HEADER, replyH2 } from './local-reply.ts';
import { trackSettings, whenSettled } from '../upstream/h2-settings.ts';
import { respondSafely, sendTrailersSafely } from '../upstream/h2-headers.ts';
import { closeIdleSessions, giveToH2Server, logSessionErrors } from './h2-socket.ts';

const log = logger('authz');

/** Peer sidecars' HTTP/2 sessions idle this long get a GOAWAY (their pools reconnect when needed). */
const INBOUND_IDLE_MS = 300_000;

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = http2.constants;

/** Request headers never relayed: the identity headers are ours to set, the rest are not HTTP/2 headers. */
const DROPPED = new Set(['x-skein-peer-identity', 'x-forwarded-client-cert', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export interface InboundH2Options {
  readonly appHost: string;
  /** The current policy for an app port, looked up per stream: a policy change applies to open connections. */
  readonly policyFor: (port: number) => InboundPolicy;
  readonly metrics: DataPlaneMetrics;
  readonly identityHeader: string;
}

interface ConnInfo {
  readonly appPort: number;
  readonly caller: Caller;
  readonly source: string | undefined;
}

const kConn = Symbol('skein.inbound.h2');
type WithConn = { [kConn]?: ConnInfo };

function who(caller: Caller): string {
  return caller.principal ?? 'an unauthenticated (plaintext) caller';
}

export class InboundH2Handler {
  private readonly options: InboundH2Options;
  private readonly server: http2.Http2Server;
  private readonly conns = new WeakMap<http2.Http2Session, ConnInfo>();
  private readonly downstream = new Set<http2.ServerHttp2Session>();
  /** One h2c session to the app per app port, replaced when it closes or is told to go away. */
  private readonly upstream = new Map<number, http2.ClientHttp2Session>();

  constructor(options: InboundH2Options) {
    this.options = options;
    this.server = http2.createServer({ maxSessionMemory: 32 });
    logSessionErrors(this.server, log, 'inbound');
    closeIdleSessions(this.server, INBOUND_IDLE_MS);
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      const info = (session.socket as unknown as WithConn)[kConn];
      if (info !== undefined) this.conns.set(session, info);
      this.downstream.add(session);
      session.once('close', () => this.downstream.delete(session));
    });
    this.server.on('stream', (stream, headers, flags) => this.stream(stream, headers, flags));
  }

  /** Takes an HTTP/2 connection after its PROXY header; `rest` holds the bytes already read (the preface onwards). */
  handle(socket: net.Socket, appPort: number, source: string | undefined, rest: Buffer, caller: Caller): void {
    (socket as WithConn)[kConn] = { appPort, caller, source };
    giveToH2Server(this.server, socket, rest);
  }

  private stream(stream: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, flags: number): void {
    stream.on('error', () => {});
    const info = this.conns.get(stream.session as http2.ServerHttp2Session);
    if (info === undefined) {
      stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    this.count(stream, info.appPort);
    const ct = h['content-type'];
    const grpc = ct !== undefined && ct.startsWith('application/grpc');
    const method = (h[':method'] as string | undefined) ?? 'GET';
    // Judged and relayed normalised, as on the HTTP/1.1 path.
    const path = normalizeTarget((h[':path'] as string | undefined) ?? '/');
    const d = authorize(this.options.policyFor(info.appPort), info.caller, { method, path });
    if (!d.allowed) {
      this.options.metrics.authzDenied.labels(d.service).inc();
      log.warn('request denied by authorization policy', { peer: who(info.caller), service: d.service, method, path, reason: d.reason, source: info.source });
      replyH2(stream, 403, 'rbac_denied', `RBAC: access denied: ${who(info.caller)} may not ${method} ${path} on ${d.service} (${d.reason})`, grpc);
      return;
    }
    const out: http2.OutgoingHttpHeaders = {};
    for (const name in h) if (!DROPPED.has(name)) out[name] = h[name];
    out[':path'] = path;
    if (info.caller.principal !== undefined) out[this.options.identityHeader] = info.caller.principal;
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    const appPort = info.appPort;
    const session = this.session(appPort);
    // The caller's request trailers (HEADERS after its DATA) go on to the app once the body has (see pool-h2.ts).
    let trailers: http2.OutgoingHttpHeaders | undefined;
    if (!endStream) stream.once('trailers', (t: http2.IncomingHttpHeaders) => (trailers = withoutPseudo(t)));
    whenSettled(
      session,
      () => {
        if (stream.destroyed || stream.closed) return;
        let up: http2.ClientHttp2Stream;
        try {
          up = session.request(out, { endStream, waitForTrailers: !endStream });
        } catch (err) {
          this.failed(stream, appPort, err as NodeJS.ErrnoException, grpc);
          return;
        }
        relay(stream, up, appPort, grpc, (err) => this.failed(stream, appPort, err, grpc));
        if (!endStream) {
          up.once('wantTrailers', () => {
            if (!up.destroyed) sendTrailersSafely(up, trailers);
          });
          stream.pipe(up);
        }
      },
      (err) => this.failed(stream, appPort, err, grpc),
    );
  }

  private session(port: number): http2.ClientHttp2Session {
    const current = this.upstream.get(port);
    if (current !== undefined && !current.closed && !current.destroyed) return current;
    const host = this.options.appHost.includes(':') ? `[${this.options.appHost}]` : this.options.appHost;
    const s = http2.connect(`http://${host}:${port}`);
    trackSettings(s);
    s.on('error', (err: NodeJS.ErrnoException) => log.debug('app HTTP/2 session failed', { port, code: err.code }));
    const forget = (): void => {
      if (this.upstream.get(port) === s) this.upstream.delete(port);
    };
    s.once('close', forget);
    s.once('goaway', forget);
    this.upstream.set(port, s);
    return s;
  }

  /** As on the HTTP/1.1 path: per answered stream, by its :status; answers of our own also by reason. */
  private count(stream: http2.ServerHttp2Stream, appPort: number): void {
    const started = performance.now();
    const metrics = this.options.metrics;
    stream.once('close', () => {
      const sent = stream.sentHeaders as http2.OutgoingHttpHeaders | undefined;
      const status = sent?.[':status'];
      if (status === undefined) return; // reset before an answer
      metrics.inbound(appPort).observe(Number(status), (performance.now() - started) / 1000);
      const reason = localReasonOf(stream);
      if (reason !== undefined) metrics.localError(reason);
    });
  }

  private failed(stream: http2.ServerHttp2Stream, appPort: number, err: NodeJS.ErrnoException, grpc: boolean): void {
    const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
    const code = (err.code === 'ERR_HTTP2_STREAM_CANCEL' && cause?.code !== undefined ? cause.code : err.code) ?? 'error';
    log.debug('app request failed', { port: appPort, code });
    if (stream.headersSent) stream.close(NGHTTP2_INTERNAL_ERROR);
    else replyH2(stream, 503, 'upstream_connect_error', `upstream connect error: ${code} app port ${appPort}`, grpc);
  }

  close(): void {
    this.server.close();
    for (const s of this.downstream) s.destroy();
    for (const s of this.upstream.values()) s.destroy();
    this.upstream.clear();
  }
}

const END_STREAM: http2.ServerStreamResponseOptions = { endStream: true };
const WAIT_FOR_TRAILERS: http2.ServerStreamResponseOptions = { waitForTrailers: true };

function withoutPseudo(h: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const name in h) if (name.charCodeAt(0) !== 0x3a) out[name] = h[name];
  return out;
}

/**
 * Relays the app's response to the caller: the head at once (alone and ending the stream when it is the whole response,
 * as gRPC's trailers-only errors are), then body and trailers. A response the app breaks off (a reset, a dropped
 * connection) is never passed on as complete: the caller's stream is reset, or for gRPC ends with UNAVAILABLE naming
 * the cause. A reset from the caller cancels the app's stream.
 */
function relay(
  stream: http2.ServerHttp2Stream,
  up: http2.ClientHttp2Stream,
  appPort: number,
  grpc: boolean,
  failed: (err: NodeJS.ErrnoException) => void,
): void {
  let trailers: http2.OutgoingHttpHeaders | undefined;
  let answered = false;
  let headOnly = false;
  let settled = false;
  const fail = (err: NodeJS.ErrnoException): void => {
    if (settled) return;
    settled = true;
    failed(err);
  };
  up.on('response', (h: http2.IncomingHttpHeaders, flags: number) => {
    if (Number(h[':status']) < 200 || stream.destroyed) return;
    answered = true;
    const head: http2.OutgoingHttpHeaders = {};
    for (const name in h) head[name] = h[name];
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    const refused = respondSafely(stream, head, endStream ? END_STREAM : WAIT_FOR_TRAILERS);
    if (refused !== undefined) {
      // A head node:http2 cannot send (a :status of 600 or more): the caller gets 502 naming it, the app's stream goes.
      headOnly = true;
      up.close(NGHTTP2_CANCEL);
      replyH2(stream, 502, 'upstream_protocol_error', `upstream protocol error: app port ${appPort}: the app's response head cannot be sent over HTTP/2: ${refused.message}`, grpc);
      return;
    }
    if (endStream) {
      headOnly = true;
      return;
    }
    stream.once('wantTrailers', () => sendTrailersSafely(stream, trailers));
    up.pipe(stream, { end: false });
  });
  up.on('trailers', (h: http2.IncomingHttpHeaders) => {
    trailers = {};
    for (const name in h) trailers[name] = h[name];
  });
  up.on('error', (err: NodeJS.ErrnoException) => {
    if (!answered) fail(err);
  });
  up.on('close', () => {
    if (stream.destroyed || stream.closed || headOnly) return;
    const rst = up.rstCode ?? NGHTTP2_NO_ERROR;
    if (!answered) {
      const err = new Error(`stream closed before the response: RST_STREAM(${rst})`) as NodeJS.ErrnoException;
      err.code = `RST_STREAM(${rst})`;
      fail(err);
    } else if (rst === NGHTTP2_NO_ERROR && up.readableEnded) stream.end();
    else if (grpc && stream.headersSent) {
      const message = `upstream reset: RST_STREAM(${rst}) app port ${appPort} (the response broke off)`;
      trailers = { 'grpc-status': '14', 'grpc-message': grpcMessage(message), [REASON_HEADER]: 'upstream_reset' };
      stream.end();
    } else stream.close(NGHTTP2_INTERNAL_ERROR);
  });
  stream.on('close', () => {
    if (!up.closed && !up.destroyed) up.close(NGHTTP2_CANCEL);
  });
}
