// One client HTTP/1.1 connection on a raw socket: llhttp parses requests, one exchange at a time (pipelined ones wait), responses written here.
import { endAfterFlush } from './close-after-flush.ts';
import type net from 'node:net';
import type { LocalReason } from '../listeners/errors.ts';
import { HPE_OK, HPE_PAUSED, HPE_PAUSED_UPGRADE, HttpParser, REQUEST } from './llhttp.ts';
import type { ExecuteResult } from './llhttp.ts';
import { RequestBody, RequestReader, errorName } from './request-reader.ts';
import type { RequestSink } from './request-reader.ts';
import {
  CONTINUE_100,
  CRLF,
  FRAME_CHUNKED,
  FRAME_CLOSE,
  FRAME_LENGTH,
  FRAME_NONE,
  LAST_CHUNK,
  chooseFraming,
  chunkHeader,
  localReplyText,
  responseHead,
} from './response-head.ts';
import type { Framing } from './response-head.ts';

/** Bytes of pipelined requests held while a response is under way before the socket stops being read. */
const MAX_PENDING = 64 * 1024;
const REASON_HEADER = 'x-skein-reason';
const HEAD_UNSEEN = -1;
/** Largest body chunk held back to go out with the response head in one write (larger ones are written as they come). */
const MAX_HELD_BODY = 16 * 1024;
const RESOLVED = Promise.resolve();

/** The listener side: routes and dispatches requests, counts local errors. */
export interface DownstreamHost {
  readonly draining: boolean;
  readonly headersTimeoutMs: number;
  /** A request head is ready on `conn` (conn.head); answer with conn.writeHead/reply and end with endResponse. */
  request(conn: DownstreamConnection): void;
  /** A CONNECT request (conn.head.url is `host:port`): open a tunnel (see detach) or answer it with reply(). */
  connect(conn: DownstreamConnection): void;
  localError(reason: LocalReason): void;
}

/** The exchange answering the current request, told about drains and about a request that broke midway. */
export interface DownstreamExchange {
  drained(): void;
  requestFailed(status: number, reason: LocalReason, message: string): void;
}

export class DownstreamConnection implements RequestSink {
  readonly socket: net.Socket;
  readonly head: RequestReader;
  private readonly host: DownstreamHost;
  private readonly parser: HttpParser;
  /** Received while the parser waits for a response (pipelined requests). */
  private pending: Buffer | undefined;
  /** The current request's message is complete (the parser is paused on it). */
  private requestDone = false;
  /** A request was handed on and its response has not ended. */
  private inExchange = false;
  /** Head complete inside execute: hand it on once execute returns (never from a parser callback). */
  private headReady = false;
  private parsing = false;
  private body: RequestBody | null = null;
  private bodyFull = false;
  /** requestBody() handed this request's body out. */
  private bodyTaken = false;
  private readPaused = false;
  private ended = false;
  /**
   * The header clock: 0 when no head is being read, HEAD_UNSEEN once one began, then the time the listener's sweep
   * first saw it (a clock read per sweep, not per request; the timeout is never shorter than asked).
   */
  private headSeenAt = 0;
  headSent = false;
  private framing: Framing = FRAME_NONE;
  private closeAfter = false;
  private corked = false;
  /**
   * The response head (and at most one small Content-Length body chunk) not written yet: a response that ends in the
   * same tick goes out as one buffer in one write, without the socket's cork and writev path.
   */
  private heldHead: string | undefined;
  private heldBody: Buffer | undefined;
  private needDrain = false;
  exchange: DownstreamExchange | undefined;
  private readonly onDataBound = (chunk: Buffer): void => this.onData(chunk);
  private readonly onEndBound = (): void => this.onEnd();
  private readonly onDrainBound = (): void => this.onDrain();

  constructor(socket: net.Socket, host: DownstreamHost, maxHeaderBytes: number) {
    this.socket = socket;
    this.host = host;
    this.head = new RequestReader(this, maxHeaderBytes);
    this.parser = new HttpParser(REQUEST, this.head);
    this.head.parser = this.parser;
  }

  /** Takes over the socket; `first` is what the protocol sniff already read. */
  start(first: Buffer): void {
    const s = this.socket;
    s.on('data', this.onDataBound);
    s.on('end', this.onEndBound);
    s.on('drain', this.onDrainBound);
    s.on('close', () => this.onClose());
    this.headSeenAt = HEAD_UNSEEN;
    this.onData(first);
    // The sniff paused the socket; read on unless the first bytes already asked to wait.
    if (!this.readPaused && !this.ended) s.resume();
  }

  // --- reading ---

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    if (this.pending !== undefined || (this.requestDone && this.inExchange)) {
      this.pending = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
      this.flow();
      return;
    }
    this.parse(chunk);
  }

  private parse(input: Buffer): void {
    let chunk = input;
    this.parsing = true;
    try {
      for (;;) {
        const r = this.parser.execute(chunk);
        if (this.headReady) {
          this.headReady = false;
          this.handOn();
        }
        if (this.ended) return;
        if (r.code === HPE_OK) return;
        if (r.code === HPE_PAUSED || r.code === HPE_PAUSED_UPGRADE) {
          const rest = chunk.subarray(r.consumed);
          if (this.inExchange) {
            this.pending = rest.length === 0 ? undefined : rest;
            return;
          }
          this.nextMessage(r.code);
          if (rest.length === 0) return;
          chunk = rest;
          continue;
        }
        this.parseError(r);
        return;
      }
    } finally {
      this.parsing = false;
      this.flow();
    }
  }

  /** The response to the last request ended: let the parser go on to the next one. */
  private nextMessage(code: number): void {
    this.requestDone = false;
    this.bodyTaken = false;
    this.body = null;
    // The last request's body is no longer ours to wait for: a push that found it full in the read that also ended it
    // is never followed by a _read (an ended stream asks for nothing), and would keep the socket paused for good.
    this.bodyFull = false;
    // An Upgrade request answered without 101 stays HTTP/1.1: start the next message afresh.
    if (code === HPE_PAUSED_UPGRADE) this.parser.reset();
    else this.parser.resume();
  }

  /** Pipelined bytes wait until now; the paused parser resumes (and may meet an upgrade pause first). */
  private continueParsing(): void {
    this.nextMessage(HPE_PAUSED);
    if (this.pending === undefined) this.flow();
    // The response may have ended inside another parser's callback (the upstream's): parse on the next tick.
    else process.nextTick(parsePending, this);
  }

  parsePending(): void {
    const p = this.pending;
    if (p === undefined || this.ended || this.inExchange) return;
    this.pending = undefined;
    this.parse(p);
  }

  headStarted(): void {
    this.headSeenAt = HEAD_UNSEEN;
  }

  headComplete(): void {
    this.headSeenAt = 0;
    this.headReady = true;
  }

  bodyChunk(chunk: Buffer): void {
    const b = (this.body ??= new RequestBody(this));
    if (!b.push(chunk)) this.bodyFull = true;
  }

  messageComplete(): void {
    this.requestDone = true;
    const b = this.body;
    if (b !== null) {
      b.push(null);
      // A body that arrived whole with its head is not handed out yet: requestBody() still has to return it.
      if (!this.bodyTaken) return;
      this.body = null;
    }
  }

  /** The request body stream, for requests that have one (empty and ended if it arrived with no bytes). */
  requestBody(): RequestBody {
    this.bodyTaken = true;
    if (this.body !== null) {
      const b = this.body;
      if (this.requestDone) this.body = null;
      return b;
    }
    const b = new RequestBody(this);
    if (this.requestDone) b.push(null);
    else this.body = b;
    return b;
  }

  bodyWanted(): void {
    if (!this.bodyFull) return;
    this.bodyFull = false;
    this.flow();
  }

  /** Reads the socket unless the body reader lags or too many pipelined bytes wait. */
  private flow(): void {
    if (this.ended) return;
    const stop = this.bodyFull || (this.pending !== undefined && this.pending.length > MAX_PENDING);
    if (stop === this.readPaused) return;
    this.readPaused = stop;
    if (stop) this.socket.pause();
    else this.socket.resume();
  }

  private handOn(): void {
    const h = this.head;
    this.inExchange = true;
    if (h.method === 'CONNECT') {
      this.host.connect(this);
      return;
    }
    // HTTP/2.0 or 0.9 written in HTTP/1.1 syntax is neither: 505, as RFC 9110 §15.6.6 and node:http answer it.
    if (h.otherVersion !== undefined) {
      this.refuse(505, 'bad_request', `HTTP/${h.otherVersion} is not supported in this syntax: send HTTP/1.1 (or HTTP/2 with its own preface)`);
      return;
    }
    // As Envoy: chunked is the only transfer coding a request may use; the body is re-framed upstream anyway.
    if (h.transferEncoding !== undefined && h.transferEncoding.trim().toLowerCase() !== 'chunked') {
      this.refuse(501, 'bad_request', `Transfer-Encoding "${h.transferEncoding.slice(0, 100)}" is not supported: send "chunked" alone or Content-Length`);
      return;
    }
    // As node:http: Expect counts for HTTP/1.1 clients only.
    if (h.expect !== undefined && !h.http10) {
      if (!/(?:^|\W)100-continue(?:$|\W)/i.test(h.expect)) {
        this.refuse(417, 'bad_request', `expectation "${h.expect}" cannot be met: only 100-continue is supported`);
        return;
      }
      // The client waits for this before sending its body (Expect is not forwarded, as node:http did not).
      if (!this.requestDone) this.socket.write(CONTINUE_100, 'latin1');
    }
    this.host.request(this);
  }

  private refuse(status: number, reason: LocalReason, message: string): void {
    this.host.localError(reason);
    this.closeAfter = true;
    this.reply(status, reason, message);
  }

  private parseError(r: ExecuteResult): void {
    const overflow = this.head.overflow;
    const status = overflow ? 431 : 400;
    const reason: LocalReason = overflow ? 'headers_too_large' : 'bad_request';
    const message = overflow
      ? `request headers too large: over ${Math.round(this.head.maxHeaderBytes / 1024)} KB`
      : `bad request: ${errorName(r.code)} (${r.reason}); the request is not valid HTTP/1.1`;
    this.closeAfter = true;
    const ex = this.exchange;
    if (this.inExchange && ex !== undefined) {
      // The body broke midway: the exchange abandons its upstream and answers (or resets) itself.
      ex.requestFailed(status, reason, message);
      this.body?.destroy(new Error(message));
      this.body = null;
      return;
    }
    this.host.localError(reason);
    this.writeFinal(localReplyText(status, REASON_HEADER, reason, message, 'close', true));
  }

  /** Called by the listener's sweep: a head read for longer than the timeout gets 408 when no exchange is under way. */
  sweepHead(now: number, timeoutMs: number): void {
    const seen = this.headSeenAt;
    if (seen === HEAD_UNSEEN) this.headSeenAt = now;
    else if (seen !== 0 && now - seen >= timeoutMs) this.headersTimedOut();
  }

  private headersTimedOut(): void {
    if (this.inExchange || this.ended) return;
    this.headSeenAt = 0;
    this.host.localError('header_timeout');
    this.writeFinal(localReplyText(408, REASON_HEADER, 'header_timeout', `request headers not received within ${this.host.headersTimeoutMs} ms`, 'close', true));
  }

  /** Draining: close now if nothing is under way (a later response says `connection: close`). */
  closeIfIdle(): void {
    if (!this.inExchange && this.headSeenAt === 0 && this.pending === undefined) this.writeFinal('');
  }

  private onEnd(): void {
    // node:http (without httpAllowHalfOpen) abandons requests in flight when the client half-closes; so do we.
    if (this.inExchange) this.socket.destroy();
    else this.writeFinal('');
  }

  private onDrain(): void {
    if (!this.needDrain) return;
    this.needDrain = false;
    this.exchange?.drained();
  }

  private onClose(): void {
    this.ended = true;
    this.body?.destroy(new Error('client connection closed before the request body ended'));
    this.body = null;
    this.exchange = undefined;
    this.pending = undefined;
    this.parser.free();
  }

  // --- writing ---

  /** The response head: framing from the request (HEAD, HTTP/1.0) and the upstream's Content-Length. */
  writeHead(status: number, headers: Record<string, string | string[] | number | undefined>): void {
    const h = this.head;
    this.framing = chooseFraming(status, headers['content-length'] !== undefined, h.method === 'HEAD', h.http10);
    const keep = h.keepAlive && this.requestDone && !this.host.draining && this.framing !== FRAME_CLOSE;
    if (!keep) this.closeAfter = true;
    this.headSent = true;
    if (this.ended) return;
    // Held until the body's first chunk or the end, or until this tick's microtasks when the body streams in later
    // reads (a resolved promise's then costs a fraction of process.nextTick, which most responses never need).
    this.heldHead = responseHead(status, headers, this.framing, keep ? (h.http10 ? 'keep-alive' : undefined) : 'close');
    void RESOLVED.then(() => this.flushHeld(''));
  }

  /** A body chunk; false when the socket is full (drained() follows). */
  writeBody(chunk: Buffer): boolean {
    const f = this.framing;
    if (f === FRAME_NONE || chunk.length === 0 || this.ended) return true;
    if (this.heldHead !== undefined) {
      if (f === FRAME_LENGTH && this.heldBody === undefined && chunk.length <= MAX_HELD_BODY) {
        this.heldBody = chunk;
        return true;
      }
      // The head goes out with this chunk in one writev (uncorked on the next tick or at the end).
      this.cork();
      this.flushHeld('');
    }
    const s = this.socket;
    let ok: boolean;
    if (f === FRAME_CHUNKED) {
      this.cork();
      s.write(chunkHeader(chunk.length), 'latin1');
      s.write(chunk);
      ok = s.write(CRLF, 'latin1');
    } else ok = s.write(chunk);
    if (!ok) this.needDrain = true;
    return ok;
  }

  endResponse(): void {
    const last = this.framing === FRAME_CHUNKED ? LAST_CHUNK : '';
    if (this.heldHead !== undefined) this.flushHeld(last);
    else if (last !== '' && !this.ended) this.socket.write(last, 'latin1');
    // A streamed body's last chunks (corked in this tick) go out in one writev now.
    this.uncorkNow();
    this.responseDone();
  }

  /** Writes the held head (and body chunk) with `tail` after them, as one write. */
  flushHeld(tail: string): void {
    const head = this.heldHead;
    if (head === undefined) return;
    const body = this.heldBody;
    this.heldHead = undefined;
    this.heldBody = undefined;
    if (this.ended || this.socket.destroyed) return;
    if (body === undefined) {
      this.socket.write(tail === '' ? head : head + tail, 'latin1');
      return;
    }
    // Heads are latin1 text: one byte per character.
    const out = Buffer.allocUnsafe(head.length + body.length + tail.length);
    out.write(head, 0, 'latin1');
    out.set(body, head.length);
    if (tail !== '') out.write(tail, head.length + body.length, 'latin1');
    if (!this.socket.write(out)) this.needDrain = true;
  }

  /** A whole local reply (status, x-skein-reason, text body) to the current request. */
  reply(status: number, reason: LocalReason, message: string): void {
    const h = this.head;
    if (!(h.keepAlive && this.requestDone && !this.host.draining)) this.closeAfter = true;
    const connection = this.closeAfter ? 'close' : h.http10 ? 'keep-alive' : undefined;
    if (!this.ended) this.socket.write(localReplyText(status, REASON_HEADER, reason, message, connection, h.method !== 'HEAD'), 'latin1');
    this.responseDone();
  }

  /**
   * The upstream switched protocols (101), or a CONNECT tunnel opened: HTTP/1.1 ends on this connection. Stops
   * reading and writing here and returns what the client sent after the request's head (the new protocol's first
   * bytes), for the tunnel. Call it after the parse that handed the head on has returned (a later tick).
   */
  detach(): Buffer | undefined {
    const rest = this.pending;
    this.pending = undefined;
    this.ended = true;
    this.inExchange = false;
    this.exchange = undefined;
    this.heldHead = undefined;
    this.heldBody = undefined;
    const s = this.socket;
    s.off('data', this.onDataBound);
    s.off('end', this.onEndBound);
    s.off('drain', this.onDrainBound);
    return rest;
  }

  /** The response broke after its head went out: reset the connection. */
  destroy(): void {
    this.heldHead = undefined;
    this.heldBody = undefined;
    this.socket.destroy();
  }

  private responseDone(): void {
    this.inExchange = false;
    this.exchange = undefined;
    this.headSent = false;
    this.needDrain = false;
    if (this.ended) return;
    if (this.closeAfter || !this.requestDone) {
      this.writeFinal('');
      return;
    }
    // Inside execute the parse loop goes on by itself; otherwise resume it here.
    if (!this.parsing) this.continueParsing();
  }

  /** Writes the last bytes and closes; nothing more is read. */
  private writeFinal(text: string): void {
    if (this.ended) return;
    this.ended = true;
    this.body?.destroy();
    this.body = null;
    // Read on to the client's end (the server allows half-open sockets), so the socket closes.
    endAfterFlush(this.socket, text);
  }

  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(uncork, this);
  }

  uncorkNow(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }
}

function parsePending(conn: DownstreamConnection): void {
  conn.parsePending();
}

function uncork(conn: DownstreamConnection): void {
  conn.uncorkNow();
}
