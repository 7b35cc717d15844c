// Reads HTTP/1.1 responses off a kept-alive connection with llhttp: head as a header record, body with backpressure.
import { BODY, CONTINUE, HPE_OK, HPE_PAUSED, HttpParser, NO_BODY, PAUSE, RESPONSE } from './llhttp.ts';
import type { ParserEvents } from './llhttp.ts';

/** Header values as node:http gives them: a repeated header becomes an array. */
export type ResponseHeaders = Record<string, string | string[] | undefined>;

/** Where a response goes. Called from inside the parser: the sink must not feed this or any other parser. */
export interface ResponseSink {
  /** The final response's head (1xx interim responses are skipped); hop-by-hop headers already removed. */
  onHead(status: number, headers: ResponseHeaders): void;
  /** A body chunk (a view of the fed buffer). false: the reader pauses; feed it again (resumeBody) to go on. */
  onBody(chunk: Buffer): boolean;
}

/** What feed() and finish() found. */
export const NEED_MORE = 0;
export const BODY_PAUSED = 1;
export const COMPLETE = 2;
export const FAILED = 3;
export type FeedOutcome = typeof NEED_MORE | typeof BODY_PAUSED | typeof COMPLETE | typeof FAILED;

/** Response headers never handed on (RFC 9110 §7.6.1), plus keep-alive which this reader reads as a hint. */
// `trailer` is not hop-by-hop (RFC 9110 §6.6.2): it stays, so an HTTP/2 client is sent the trailers it announces.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'proxy-authorization', 'proxy-authenticate', 'http2-settings']);

/** Largest response head (or trailer block) accepted. */
export const MAX_HEAD_BYTES = 64 * 1024;

const LLHTTP_ERRORS: Record<number, string> = {
  1: 'HPE_INTERNAL', 2: 'HPE_STRICT', 3: 'HPE_LF_EXPECTED', 4: 'HPE_UNEXPECTED_CONTENT_LENGTH', 5: 'HPE_CLOSED_CONNECTION',
  8: 'HPE_INVALID_CONSTANT', 9: 'HPE_INVALID_VERSION', 10: 'HPE_INVALID_HEADER_TOKEN', 11: 'HPE_INVALID_CONTENT_LENGTH',
  12: 'HPE_INVALID_CHUNK_SIZE', 13: 'HPE_INVALID_STATUS', 14: 'HPE_INVALID_EOF_STATE', 15: 'HPE_INVALID_TRANSFER_ENCODING',
  25: 'HPE_CR_EXPECTED', 30: 'HPE_UNEXPECTED_SPACE',
};

const EMPTY = Buffer.alloc(0);

/**
 * One connection's response parser. begin() before each request; feed() every chunk read. A body chunk the sink
 * refuses pauses the parser (BODY_PAUSED) with the unread rest kept; resumeBody() goes on from there. A message that
 * completes also stops the parser (COMPLETE), so the caller acts outside the parser; `rest` then holds any bytes
 * after it (a server that sent more than one response).
 */
export class ResponseReader implements ParserEvents {
  private readonly parser: HttpParser;
  private sink: ResponseSink | undefined;
  private noBody = false;
  /** Some byte of a response arrived since begin(). */
  started = false;
  /** llhttp's verdict from the final head: the connection may carry another request. */
  keepAlive = false;
  /** The server's Keep-Alive `timeout=` hint in ms (undefined: none given). */
  keepAliveHintMs: number | undefined;
  trailers: ResponseHeaders | undefined;
  /** Unparsed input after BODY_PAUSED or COMPLETE. */
  rest: Buffer | undefined;
  /** The error name when feed() or finish() returned FAILED (e.g. HPE_INVALID_CONSTANT). */
  errorCode = '';
  errorReason = '';
  private complete = false;
  private interim = false;
  private inHead = true;
  private headers: ResponseHeaders = {};
  private name = '';
  private value = '';
  private inValue = false;
  private headBytes = 0;
  private connection: string | undefined;
  /** A Transfer-Encoding with a coding other than chunked (gzip, deflate...), which the sidecar does not decode. */
  private otherCoding: string | undefined;

  constructor() {
    this.parser = new HttpParser(RESPONSE, this);
  }

  /** Expect the response to a new request; `noBody` for HEAD (no body whatever the headers say). */
  begin(sink: ResponseSink, noBody: boolean): void {
    this.sink = sink;
    this.noBody = noBody;
    this.started = false;
    this.complete = false;
    this.keepAlive = false;
    this.trailers = undefined;
    this.rest = undefined;
    this.errorCode = '';
    this.errorReason = '';
  }

  /** Delivers the rest of the current response to `sink` instead (the request was given up; see H1Connection). */
  redirect(sink: ResponseSink): void {
    if (this.sink !== undefined) this.sink = sink;
  }

  /** Stop delivering: callbacks from the chunk being parsed end the parse. */
  stop(): void {
    this.sink = undefined;
  }

  feed(chunk: Buffer): FeedOutcome {
    if (chunk.length > 0) this.started = true;
    this.rest = undefined;
    const r = this.parser.execute(chunk);
    if (r.code === HPE_OK) return NEED_MORE;
    if (r.code === HPE_PAUSED) {
      this.parser.resume();
      if (r.consumed < chunk.length) this.rest = chunk.subarray(r.consumed);
      return this.complete ? COMPLETE : BODY_PAUSED;
    }
    if (this.errorCode === '') this.errorCode = LLHTTP_ERRORS[r.code] ?? `HPE_${r.code}`;
    if (this.errorReason === '') this.errorReason = r.reason;
    return FAILED;
  }

  /** Goes on after BODY_PAUSED with the bytes kept back (possibly none: the message may complete now). */
  resumeBody(): FeedOutcome {
    const rest = this.rest ?? EMPTY;
    return this.feed(rest);
  }

  /** The connection ended: completes a response framed by close; NEED_MORE when no response had started. */
  finish(): FeedOutcome {
    if (!this.started) return NEED_MORE;
    const code = this.parser.finish();
    if (this.complete) return COMPLETE;
    this.errorCode = code === HPE_OK ? 'HPE_INVALID_EOF_STATE' : (LLHTTP_ERRORS[code] ?? `HPE_${code}`);
    this.errorReason = 'the connection closed before the response ended';
    return FAILED;
  }

  free(): void {
    this.sink = undefined;
    this.parser.free();
  }

  // --- llhttp's events ---

  onMessageBegin(): number {
    this.inHead = true;
    this.headers = {};
    this.name = '';
    this.value = '';
    this.inValue = false;
    this.headBytes = 0;
    this.connection = undefined;
    this.keepAliveHintMs = undefined;
    this.otherCoding = undefined;
    return CONTINUE;
  }

  onUrl(): number {
    return CONTINUE;
  }

  onStatus(): number {
    return CONTINUE;
  }

  onHeaderField(text: string): number {
    if (this.inValue) this.commit();
    this.name += text;
    return this.count(text.length);
  }

  onHeaderValue(text: string): number {
    this.value += text;
    this.inValue = true;
    return this.count(text.length);
  }

  onHeadersComplete(status: number, upgrade: boolean, keepAlive: boolean): number {
    if (this.inValue || this.name !== '') this.commit();
    const sink = this.sink;
    if (sink === undefined) return PAUSE;
    if (upgrade || status === 101) {
      this.errorCode = 'HPE_UNEXPECTED_UPGRADE';
      return PAUSE + 100; // any other value is an error for llhttp (HPE_CB_HEADERS_COMPLETE)
    }
    if (status < 100) {
      // llhttp reads any three digits; below 100 is no HTTP status (taken for a 1xx, the response never ended).
      this.errorCode = 'HPE_INVALID_STATUS';
      this.errorReason = `status ${status} is not an HTTP status code (100-999)`;
      return PAUSE + 100;
    }
    if (this.otherCoding !== undefined && status >= 200) {
      // Passed on, the coded bytes would reach the client as if they were the content (the header is hop-by-hop).
      this.errorCode = 'HPE_INVALID_TRANSFER_ENCODING';
      this.errorReason = `Transfer-Encoding "${this.otherCoding}": only chunked is supported`;
      return PAUSE + 100;
    }
    this.inHead = false;
    if (status < 200) {
      this.interim = true;
      return BODY; // llhttp knows a 1xx has no body
    }
    this.keepAlive = keepAlive;
    const headers = this.headers;
    if (this.connection !== undefined) dropListed(headers, this.connection);
    sink.onHead(status, headers);
    return this.noBody ? NO_BODY : BODY;
  }

  onBody(chunk: Buffer): number {
    const sink = this.sink;
    if (sink === undefined) return PAUSE;
    // llhttp reports an empty body span when it resumes on no input: nothing to deliver.
    if (chunk.length === 0) return CONTINUE;
    return sink.onBody(chunk) ? CONTINUE : PAUSE;
  }

  onMessageComplete(): number {
    if (this.inValue || this.name !== '') this.commit();
    if (this.interim) {
      this.interim = false;
      return CONTINUE;
    }
    this.complete = true;
    return PAUSE;
  }

  private count(n: number): number {
    this.headBytes += n;
    if (this.headBytes <= MAX_HEAD_BYTES) return CONTINUE;
    this.errorCode = 'HPE_HEADER_OVERFLOW';
    return PAUSE + 100;
  }

  /** One complete header line: into the head's record, or the trailers once the head is done. */
  private commit(): void {
    const name = this.name.toLowerCase();
    let value = this.value;
    this.name = '';
    this.value = '';
    this.inValue = false;
    const last = value.charCodeAt(value.length - 1);
    if (last === 0x20 || last === 0x09) value = value.trimEnd();
    let target: ResponseHeaders;
    if (this.inHead) {
      if (HOP_BY_HOP.has(name)) {
        if (name === 'connection') this.connection = this.connection === undefined ? value : `${this.connection},${value}`;
        else if (name === 'keep-alive') this.keepAliveHintMs = keepAliveHint(value);
        else if (name === 'transfer-encoding' && !onlyChunked(value)) this.otherCoding = this.otherCoding === undefined ? value : `${this.otherCoding}, ${value}`;
        return;
      }
      target = this.headers;
    } else {
      // Connection-specific fields are not passed on from trailers either; llhttp takes a `Connection: close` there
      // as the end of the connection, so the connection must not be reused.
      if (HOP_BY_HOP.has(name)) {
        if (name === 'connection' && /(?:^|,)\s*close\s*(?:,|$)/i.test(value)) this.keepAlive = false;
        return;
      }
      target = this.trailers ??= {};
    }
    if (name === '__proto__') return;
    const prev = target[name];
    if (prev === undefined) target[name] = value;
    else if (typeof prev === 'string') target[name] = [prev, value];
    else prev.push(value);
  }
}

/** A Transfer-Encoding value that lists no coding but chunked (any case, spaces around it). */
function onlyChunked(value: string): boolean {
  for (const c of value.split(',')) if (c.trim().toLowerCase() !== 'chunked') return false;
  return true;
}

/** Removes the headers a Connection header names. */
function dropListed(headers: ResponseHeaders, connection: string): void {
  for (const n of connection.split(',')) {
    const t = n.trim().toLowerCase();
    if (t !== '' && t !== 'close' && t !== 'keep-alive') delete headers[t];
  }
}

/** `timeout=N` of a Keep-Alive header, in ms. */
function keepAliveHint(value: string): number | undefined {
  const m = /(?:^|[\s,;])timeout\s*=\s*(\d+)/i.exec(value);
  return m === null ? undefined : Number(m[1]) * 1000;
}
