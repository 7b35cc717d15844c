// HTTP/1.1 Upgrade (WebSocket and the like) on the outbound path: its own upstream connection, the 101, then a byte tunnel.
import type net from 'node:net';
import type { DownstreamConnection } from '../http1/downstream-connection.ts';
import { InvalidRequestHeadError, requestHead } from '../http1/request-head.ts';
import { COMPLETE, FAILED, NEED_MORE, ResponseReader } from '../http1/response-reader.ts';
import { readUpgradeAnswer } from '../http1/upgrade-answer.ts';
import type { ResponseHeaders, ResponseSink } from '../http1/response-reader.ts';
import type { ClusterManager, DispatchController, Endpoint, EndpointPool, HeaderList } from '../upstream/index.ts';
import { upstreamError } from '../upstream/index.ts';
import { logger } from '../log.ts';
import type { H1Downstream } from './downstream.ts';
import { badRequest, LocalReplyError, upstreamReset, upstreamTimeout } from './errors.ts';

const log = logger('upgrade');

/** An Upgrade request as the outbound listener resolved it. */
export interface UpgradeRequest {
  readonly cluster: string;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** The forwarded headers (hop-by-hop ones already out). */
  readonly headers: HeaderList;
  /** The Upgrade header's value, e.g. `websocket`. */
  readonly protocol: string;
  readonly hash: string | undefined;
  /** The route timeout, applied until the upstream's answer to the upgrade request (0: none). */
  readonly timeoutMs: number;
}

/** How long one side of a tunnel may stay open after the other closed (its half-close still finishing). */
const GRACE_MS = 10_000;

/**
 * The protocol a request asks to switch to, when the mesh tunnels it: any Upgrade but `h2c` (the sidecar speaks
 * HTTP/2 itself; an h2c upgrade offer is served as the plain HTTP/1.1 request it also is, as Envoy does).
 */
export function tunnelledProtocol(rawHeaders: readonly string[]): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 7 && name.toLowerCase() === 'upgrade') value = value === undefined ? rawHeaders[i + 1] : `${value}, ${rawHeaders[i + 1]}`;
  }
  if (value === undefined) return undefined;
  const offers = value.split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (offers.length === 0 || offers.every((p) => p.toLowerCase() === 'h2c')) return undefined;
  return offers.filter((p) => p.toLowerCase() !== 'h2c').join(', ');
}

/**
 * Sends an Upgrade request on a connection of its own to an endpoint of the cluster (mTLS and the PROXY header to a
 * peer sidecar, as for TCP streams). A 101 goes back to the client as the upstream sent it and the two connections
 * become one tunnel until either closes; any other answer is relayed as an ordinary response on the client's
 * keep-alive connection. Local failures (no endpoint, refused, timeout) are the usual 503/504 replies.
 */
export function startUpgrade(manager: ClusterManager, conn: DownstreamConnection, req: UpgradeRequest, handler: H1Downstream): void {
  const chosen = manager.choose(req.cluster, req.hash);
  if (chosen instanceof LocalReplyError) {
    handler.onResponseError(chosen);
    return;
  }
  let head: string;
  try {
    head = requestHead(req.method, req.path, req.authority, req.headers, 'none', req.protocol);
  } catch (err) {
    if (!(err instanceof InvalidRequestHeadError)) throw err;
    handler.onResponseError(badRequest(err.message));
    return;
  }
  new Tunnel(conn, handler, chosen.endpoint, req.timeoutMs).begin(head);
}

const HEAD = 0;
const RESPONSE = 1;
const TUNNEL = 2;
const DONE = 3;

class Tunnel implements ResponseSink, DispatchController {
  private readonly conn: DownstreamConnection;
  private readonly handler: H1Downstream;
  private readonly ep: Endpoint;
  /** The pool this tunnel counts in (the endpoint may get a new one while it is open: see Endpoint.renewPool). */
  private readonly pool: EndpointPool;
  private readonly upstream: net.Socket;
  private readonly startedAt: number;
  private readonly timeoutMs: number;
  private phase = HEAD;
  /** The upgrade failed here (no answer, a bad one, a timeout): counted as a failed request of the endpoint. */
  private failedHere = false;
  private buffered: Buffer | undefined;
  private reader: ResponseReader | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly onData = (chunk: Buffer): void => this.received(chunk);
  private readonly onEnd = (): void => this.upstreamEnded();
  private readonly onError = (err: NodeJS.ErrnoException): void => this.upstreamFailed(err);
  private readonly onClose = (): void => this.finish();
  private readonly onTunnelError = (): void => this.breakTunnel();
  /** After one side of an open tunnel closed: how long the other may take to finish its half. */
  private grace: NodeJS.Timeout | undefined;

  constructor(conn: DownstreamConnection, handler: H1Downstream, ep: Endpoint, timeoutMs: number) {
    this.conn = conn;
    this.handler = handler;
    this.ep = ep;
    this.timeoutMs = timeoutMs;
    this.pool = ep.pool;
    this.upstream = this.pool.openStream();
    this.startedAt = ep.load.start();
  }

  begin(head: string): void {
    const u = this.upstream;
    u.on('data', this.onData);
    u.on('end', this.onEnd);
    u.on('error', this.onError);
    u.on('close', this.onClose);
    this.handler.onRequestStart(this);
    // Decided after the turn's I/O (setImmediate runs after the poll phase): timers run before I/O, so once the process
    // was held past the timeout, an answer that came meanwhile is read first.
    if (this.timeoutMs > 0) this.timer = setTimeout(() => setImmediate(() => this.timedOut()), this.timeoutMs);
    // Queued until the connection (and its TLS handshake) is up, after the PROXY header.
    u.write(head, 'latin1');
  }

  // --- DispatchController: the client connection's side ---

  pause(): void {
    this.upstream.pause();
  }

  resume(): void {
    this.upstream.resume();
  }

  /** The client went away (or the exchange was given up) before the tunnel opened. */
  abort(): void {
    this.upstream.destroy();
    this.finish();
  }

  // --- the upstream's answer ---

  private received(chunk: Buffer): void {
    if (this.phase === RESPONSE) {
      this.feed(chunk);
      return;
    }
    if (this.phase !== HEAD) return;
    const buf = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    const answer = readUpgradeAnswer(buf);
    switch (answer.kind) {
      case 'more':
        this.buffered = buf;
        return;
      case 'overflow':
        this.fail(upstreamReset('HPE_HEADER_OVERFLOW', this.ep.pool.dialTarget));
        return;
      case 'switch':
        this.open(answer.head, answer.rest);
        return;
      case 'response':
        // Not switching: an ordinary response, read with the HTTP/1.1 parser (its framing decides where it ends).
        this.buffered = undefined;
        this.clearTimer();
        this.phase = RESPONSE;
        this.reader = new ResponseReader();
        this.reader.begin(this, false);
        this.feed(answer.response);
    }
  }

  /** 101: the client gets the upstream's head as sent, then the connections are joined. */
  private open(head: Buffer, after: Buffer): void {
    this.clearTimer();
    this.phase = TUNNEL;
    this.buffered = undefined;
    const client = this.conn.socket;
    const u = this.upstream;
    this.handler.upgraded();
    const early = this.conn.detach();
    u.off('data', this.onData);
    u.off('end', this.onEnd);
    client.write(head);
    if (after.length > 0) client.write(after);
    if (early !== undefined && early.length > 0) u.write(early);
    client.on('error', this.onTunnelError);
    client.on('close', this.onClose);
    // Half-closes pass through: each side's end ends the other's writing (WebSocket closes, then FINs).
    client.pipe(u);
    u.pipe(client);
    if (log.debugEnabled) log.debug('upgraded', { target: this.ep.pool.dialTarget });
  }

  private feed(chunk: Buffer): void {
    const reader = this.reader as ResponseReader;
    const out = reader.feed(chunk);
    if (out === NEED_MORE) return;
    if (out === COMPLETE) {
      this.phase = DONE;
      this.handler.onResponseEnd(reader.trailers);
      this.upstream.destroy();
      return;
    }
    if (out === FAILED) this.fail(upstreamReset(reader.errorCode, this.ep.pool.dialTarget));
  }

  onHead(status: number, headers: ResponseHeaders): void {
    this.handler.onResponseStart(status, headers);
  }

  onBody(chunk: Buffer): boolean {
    // The chunk is taken either way; a full client socket pauses the upstream until it drains (resume()).
    if (!this.handler.onResponseData(chunk)) this.upstream.pause();
    return true;
  }

  private upstreamEnded(): void {
    if (this.phase === RESPONSE) {
      const reader = this.reader as ResponseReader;
      if (reader.finish() === COMPLETE) {
        this.phase = DONE;
        this.handler.onResponseEnd(reader.trailers);
        this.upstream.destroy();
        return;
      }
    }
    const err = new Error('the upstream closed the connection before answering the upgrade') as NodeJS.ErrnoException;
    err.code = 'SKEIN_UPSTREAM_CLOSED';
    this.fail(upstreamReset(err.code, this.ep.pool.dialTarget, err));
  }

  private upstreamFailed(err: NodeJS.ErrnoException): void {
    if (this.phase === TUNNEL) {
      log.debug('tunnel upstream error', { target: this.ep.pool.dialTarget, code: err.code });
      this.breakTunnel();
      return;
    }
    this.fail(upstreamError(err, this.ep.pool.dialTarget));
  }

  private timedOut(): void {
    this.timer = undefined;
    if (this.phase === HEAD) this.fail(upstreamTimeout('the answer to the upgrade request', this.timeoutMs, this.ep.pool.dialTarget));
  }

  private fail(error: ReturnType<typeof upstreamReset>): void {
    if (this.phase === DONE || this.phase === TUNNEL) return;
    this.phase = DONE;
    this.failedHere = true;
    this.handler.onResponseError(error);
    this.upstream.destroy();
    this.finish();
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** A reset or error on either side of the tunnel: both go at once. */
  private breakTunnel(): void {
    this.conn.socket.destroy();
    this.upstream.destroy();
  }

  /**
   * A connection closed. In a tunnel, a side that ended cleanly has already ended the other's writing (pipe), and
   * bytes still queued there must get out: the other side closes when its peer finishes, or after GRACE_MS. The
   * endpoint's stream slot and load are released once, when both are closed.
   */
  private released = false;
  private finish(): void {
    this.clearTimer();
    if (this.phase === TUNNEL) {
      const client = this.conn.socket;
      const u = this.upstream;
      if (!client.destroyed || !u.destroyed) {
        if (this.grace === undefined) {
          this.grace = setTimeout(() => this.breakTunnel(), GRACE_MS);
          this.grace.unref();
        }
        return;
      }
      clearTimeout(this.grace);
    }
    if (this.released) return;
    this.released = true;
    this.reader?.free();
    // An answered upgrade is a tunnel: its lifetime is no latency sample. A refused one (an answer without 101) is.
    if (this.phase === TUNNEL) this.ep.load.endStream(this.failedHere, this.startedAt);
    else this.ep.load.finish(this.startedAt, this.failedHere);
    this.pool.release();
  }
}
