// One kept-alive HTTP/1.1 connection to an endpoint: one exchange at a time, responses parsed with llhttp.
import type net from 'node:net';
import { BODY_PAUSED, COMPLETE, NEED_MORE, ResponseReader } from '../http1/response-reader.ts';
import type { ResponseHeaders, ResponseSink } from '../http1/response-reader.ts';
import { guardWrites } from './write-guard.ts';

/** The pool a connection returns to between requests. */
export interface ConnectionOwner {
  /** Keep `c` for the next request; false: close it instead. */
  park(c: H1Connection): boolean;
  /** `c` closed: never hand it out again. */
  forget(c: H1Connection): void;
}

/** The request a connection carries, as the connection sees it. */
export interface ConnectionUser extends ResponseSink {
  /** The socket is usable: write the request. */
  write(socket: net.Socket): void;
  /** The whole request (body included) has been handed to the socket. */
  readonly requestSent: boolean;
  /** The server stopped reading (it closed or reset): write no more of the body; its answer may still come. */
  stopBody(): void;
  complete(trailers: ResponseHeaders | undefined): void;
  /** The exchange broke; `started`: some response byte had arrived; `reused`: the connection carried one before. */
  failed(err: NodeJS.ErrnoException, started: boolean, reused: boolean): void;
}

/** The code of the error for a connection the server closed before a full response (undici's "other side closed"). */
export const CLOSED_CODE = 'SKEIN_UPSTREAM_CLOSED';

const kConn = Symbol('skein.h1connection');
type WithConn = { [kConn]: H1Connection };

/**
 * Where plain TCP upstream sockets read (node's `onread`): one buffer for all of them, since each read is handed on
 * synchronously and copied out first. This skips the Readable stream's per-read work and node's 64 KiB allocation.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** Opens the socket; `onread` is honoured by plain TCP sockets (TLS ones emit 'data' instead). */
export type OpenSocket = (onread: net.OnReadOpts) => net.Socket;

export class H1Connection {
  readonly socket: net.Socket;
  private readonly owner: ConnectionOwner;
  private readonly reader = new ResponseReader();
  private user: ConnectionUser | undefined;
  private ready = false;
  /** Requests started on this connection. */
  requests = 0;
  /** When it was last parked (Date.now()). */
  idleSince = 0;
  /** How long it may stay idle: the default, or less when the server's Keep-Alive hint says so. */
  idleMs: number;
  closed = false;
  /** Counted among its pool's open connections (cleared when the pool forgets it, so it is counted off once). */
  counted = true;
  private parsing = false;
  private bodyPaused = false;
  private resumeWanted = false;
  private ended = false;
  /** The server refused a write (EPIPE, ECONNRESET): read on for its answer, never reuse the connection. */
  private refused = false;
  /** Writes are guarded (see guardBody). */
  private guarded = false;

  constructor(owner: ConnectionOwner, open: OpenSocket, idleMs: number) {
    this.owner = owner;
    const socket = open({ buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.received(n, buf) });
    this.socket = socket;
    this.idleMs = idleMs;
    (socket as unknown as WithConn)[kConn] = this;
    // TCP keep-alive probes find a peer that vanished while the connection sat idle (undici does the same).
    socket.setKeepAlive(true, 60_000);
    socket.once((socket as { encrypted?: boolean }).encrypted === true ? 'secureConnect' : 'connect', onReady);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
  }

  /** Carries `user`'s request: written now, or once the connection is up. `noBody`: a HEAD request. */
  start(user: ConnectionUser, noBody: boolean): void {
    this.user = user;
    this.requests++;
    this.bodyPaused = false;
    this.resumeWanted = false;
    this.reader.begin(user, noBody);
    if (this.ready) user.write(this.socket);
  }

  /** Stop reading (the downstream is full). */
  pause(): void {
    this.socket.pause();
  }

  /**
   * Read again: first what the parser held back, then the socket. The held-back bytes are parsed on the next tick,
   * so a caller that is itself inside a parser callback (a downstream llhttp parser) never re-enters llhttp.
   */
  resume(): void {
    if (this.parsing) {
      this.resumeWanted = true;
      return;
    }
    if (this.closed || this.user === undefined) return;
    if (this.bodyPaused) {
      this.bodyPaused = false;
      process.nextTick(resumeParse, this, this.user);
      return;
    }
    this.socket.resume();
  }

  /** Parses what was held back for `user`, then reads the socket again (unless the parser paused once more). */
  resumeHeld(user: ConnectionUser): void {
    if (this.closed || this.user !== user) return;
    this.parse(undefined);
    if (this.user === user && !this.bodyPaused) this.socket.resume();
  }

  /**
   * The request was given up mid-exchange. When the whole request went out and the response has begun, the
   * connection stays to read the rest of the response and throw it away (at most DISCARD_MS and DISCARD_BYTES), then goes back to the pool: a caller that
   * gives up (a client timeout, a load generator's) does not cost a new connection, over mTLS a new handshake, each
   * time. Otherwise, or past those limits, it closes.
   */
  abandon(): void {
    const user = this.user;
    // Only once the response has begun: an app that has not answered yet may be hung, and a connection waiting on it
    // would hold one of the endpoint's connection slots for nothing.
    if (user !== undefined && user.requestSent && this.reader.started && this.ready && !this.parsing && !this.closed && !this.ended) {
      const discard = new Discard(this);
      this.user = discard;
      this.reader.redirect(discard);
      this.resume();
      return;
    }
    this.user = undefined;
    this.reader.stop();
    this.destroy();
  }

  /** A discarded response ran past its limits: close. */
  giveUpDiscard(discard: ConnectionUser): void {
    if (this.user !== discard) return;
    this.user = undefined;
    this.reader.stop();
    this.destroy();
  }

  /** Ends the exchange with `err` and closes the connection. */
  fail(err: NodeJS.ErrnoException): void {
    const user = this.user;
    if (user === undefined) return;
    this.user = undefined;
    this.reader.stop();
    this.destroy();
    user.failed(err, this.reader.started, this.requests > 1);
  }

  destroy(): void {
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /**
   * Before a request body is written (once per connection; requests without one never pay for it): an app that
   * answers an upload early (a 413) and closes with the body unread resets the connection, the write of the next
   * body bytes fails, and its answer, already in our kernel buffer, must still be read (as Envoy does).
   */
  guardBody(): void {
    if (this.guarded) return;
    this.guarded = true;
    guardWrites(this.socket, onRefused);
  }

  /** The server refused our writes: the rest of the request body is dropped; the response is read to its end or error. */
  writeRefused(): void {
    if (this.refused) return;
    this.refused = true;
    this.user?.stopBody();
  }

  connected(): void {
    this.ready = true;
    this.user?.write(this.socket);
  }

  /** `n` bytes read into the shared buffer: copied out (body chunks are handed on and may be written later). */
  private received(n: number, buf: Uint8Array): boolean {
    const chunk = Buffer.allocUnsafe(n);
    chunk.set(buf.subarray(0, n));
    this.data(chunk);
    // Reading stops only through pause() (backpressure), never through the return value.
    return true;
  }

  data(chunk: Buffer): void {
    if (this.user === undefined) {
      // Bytes while idle: the server is not speaking in turn; this connection cannot be trusted with a request.
      this.destroy();
      return;
    }
    this.parse(chunk);
  }

  /** Feeds the parser (`undefined`: what it held back) and acts on the outcome outside its callbacks. */
  private parse(chunk: Buffer | undefined): void {
    const user = this.user as ConnectionUser;
    this.parsing = true;
    let out;
    try {
      out = chunk === undefined ? this.reader.resumeBody() : this.reader.feed(chunk);
    } finally {
      this.parsing = false;
    }
    if (this.user !== user) return; // abandoned from a callback
    if (out === NEED_MORE) return;
    if (out === BODY_PAUSED) {
      this.bodyPaused = true;
      this.socket.pause();
      if (this.resumeWanted) {
        this.resumeWanted = false;
        this.resume();
      }
      return;
    }
    if (out === COMPLETE) {
      this.done(user);
      return;
    }
    this.fail(protocolError(this.reader.errorCode, this.reader.errorReason));
  }

  private done(user: ConnectionUser): void {
    const r = this.reader;
    this.user = undefined;
    const hint = r.keepAliveHintMs;
    // Close before the server's own idle timeout would (a second early).
    if (hint !== undefined) this.idleMs = Math.min(this.idleMs, hint - 1000);
    const reusable = r.keepAlive && r.rest === undefined && user.requestSent && !this.ended && !this.closed && !this.refused;
    if (reusable && this.owner.park(this)) {
      if (this.socket.isPaused()) this.socket.resume();
    } else {
      this.destroy();
    }
    user.complete(r.trailers);
  }

  peerEnded(): void {
    this.ended = true;
    const user = this.user;
    if (user === undefined) {
      this.destroy();
      return;
    }
    // A response framed by the close completes now; anything else is a close before a full response.
    const out = this.reader.finish();
    if (out === COMPLETE) this.done(user);
    else this.fail(closedError());
  }

  onClosed(): void {
    this.closed = true;
    this.owner.forget(this);
    if (this.user !== undefined) this.fail(closedError());
    if (!this.parsing) this.reader.free();
  }
}

/** How long, and how many body bytes, a given-up response is read to keep its connection (see abandon). */
const DISCARD_MS = 2000;
const DISCARD_BYTES = 256 * 1024;

/** The user of a connection whose request was given up: reads the response to its end and drops it. */
class Discard implements ConnectionUser {
  private readonly conn: H1Connection;
  private readonly timer: NodeJS.Timeout;
  private bytes = 0;
  readonly requestSent = true;

  constructor(conn: H1Connection) {
    this.conn = conn;
    this.timer = setTimeout(giveUp, DISCARD_MS, conn, this);
    this.timer.unref();
  }

  write(): void {}
  stopBody(): void {}
  onHead(): void {}
  onBody(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    if (this.bytes > DISCARD_BYTES) {
      clearTimeout(this.timer);
      process.nextTick(giveUp, this.conn, this);
    }
    return true;
  }
  complete(): void {
    clearTimeout(this.timer);
  }
  failed(): void {
    clearTimeout(this.timer);
  }
}

function giveUp(conn: H1Connection, discard: Discard): void {
  conn.giveUpDiscard(discard);
}

function closedError(): NodeJS.ErrnoException {
  const err = new Error('the upstream closed the connection before a full response') as NodeJS.ErrnoException;
  err.code = CLOSED_CODE;
  return err;
}

function protocolError(code: string, reason: string): NodeJS.ErrnoException {
  const err = new Error(`the upstream response is not valid HTTP/1.1: ${reason} (${code})`) as NodeJS.ErrnoException;
  err.code = code;
  return err;
}

function resumeParse(c: H1Connection, user: ConnectionUser): void {
  c.resumeHeld(user);
}
function onRefused(socket: net.Socket): void {
  (socket as unknown as WithConn)[kConn].writeRefused();
}
function onReady(this: net.Socket): void {
  (this as unknown as WithConn)[kConn].connected();
}
function onData(this: net.Socket, chunk: Buffer): void {
  (this as unknown as WithConn)[kConn].data(chunk);
}
function onEnd(this: net.Socket): void {
  (this as unknown as WithConn)[kConn].peerEnded();
}
function onError(this: net.Socket, err: NodeJS.ErrnoException): void {
  (this as unknown as WithConn)[kConn].fail(err);
}
function onClose(this: net.Socket): void {
  (this as unknown as WithConn)[kConn].onClosed();
}
