// Collects one HTTP/1.1 request head from llhttp's callbacks (URL, raw header pairs, byte count against the limit); the body stream; error names.
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { BODY, CONTINUE, HPE_USER, PAUSE } from './llhttp.ts';
import type { HttpParser, ParserEvents } from './llhttp.ts';
import type { ReplayableBody } from '../upstream/dispatch.ts';

/** What the reader tells its connection (called from inside the parser: must not execute a parser). */
export interface RequestSink {
  /** A request line began: the header timeout starts. */
  headStarted(): void;
  /** The head is complete (the reader's fields are valid until the next headStarted). */
  headComplete(): void;
  /** Decoded body bytes (a view of the socket's chunk, which node never reuses). */
  bodyChunk(chunk: Buffer): void;
  /** The request ended; the parser pauses here until the response is done. */
  messageComplete(): void;
}

const require = createRequire(import.meta.url);
const ERROR_NAMES: string[] = [];
for (const [name, n] of Object.entries((require('undici/lib/llhttp/constants.js') as { ERROR: Record<string, number> }).ERROR)) {
  ERROR_NAMES[n] = `HPE_${name}`;
}

/** llhttp's name for an error number (HPE_INVALID_METHOD, ...), from undici's copy of llhttp's constants. */
export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `HPE_${code}`;
}

/**
 * How much of a request body is kept for sending it again (ReplayableBody): Linkerd's limit for retrying requests
 * with bodies. Larger bodies are not kept past it, and are never sent twice.
 */
export const REPLAY_LIMIT_BYTES = 64 * 1024;

/**
 * A request body as a stream: filled from the parser; `_read` tells the connection to read the socket again. Keeps its
 * chunks (views of the socket's reads, no copy) up to REPLAY_LIMIT_BYTES, so it can be sent again (ReplayableBody).
 */
export class RequestBody extends Readable implements ReplayableBody {
  private readonly owner: { bodyWanted(): void };
  /** The body's chunks so far; undefined once it outgrew the limit. */
  private kept: Buffer[] | undefined = [];
  private keptBytes = 0;
  private complete = false;

  constructor(owner: { bodyWanted(): void }) {
    super();
    this.owner = owner;
    // The connection destroys the body when the client leaves; the exchange learns of it through its abort, and a
    // reader attaches its own listener. With no reader yet (the upstream still connecting) the error must not throw.
    this.on('error', ignore);
  }

  override _read(): void {
    this.owner.bodyWanted();
  }

  override push(chunk: Buffer | null): boolean {
    if (chunk === null) this.complete = true;
    else if (this.kept !== undefined) {
      this.keptBytes += chunk.length;
      if (this.keptBytes > REPLAY_LIMIT_BYTES) this.kept = undefined;
      else this.kept.push(chunk);
    }
    return super.push(chunk);
  }

  get replayable(): boolean {
    // A stream is destroyed once read to its end: only one destroyed before it (the client left) is lost.
    return this.kept !== undefined && (this.complete || !this.destroyed);
  }

  whenComplete(then: (replay: Readable | undefined) => void): void {
    if (this.complete || !this.replayable) {
      then(this.replay());
      return;
    }
    const settle = (): void => {
      this.off('end', settle);
      this.off('close', settle);
      this.off('data', counted);
      then(this.replay());
    };
    // Past the limit: stop waiting (the rest flows away as before).
    const counted = (): void => {
      if (this.kept === undefined) settle();
    };
    this.on('end', settle);
    this.on('close', settle);
    this.on('data', counted);
    // The first attempt's reader let go of it: the rest is read here, as the exchange would have dropped it anyway.
    this.resume();
  }

  private replay(): Readable | undefined {
    const kept = this.kept;
    if (kept === undefined || !this.complete) return undefined;
    return Readable.from(kept, { objectMode: false });
  }
}

/** The request head being read, plus what llhttp decided about it. */
export class RequestReader implements ParserEvents {
  private readonly sink: RequestSink;
  readonly maxHeaderBytes: number;
  parser: HttpParser | undefined;
  url = '';
  /** `[name, value, name, value, ...]` as received (names not lower-cased). */
  rawHeaders: string[] = [];
  method = '';
  /** The client speaks HTTP/1.0 (minor version 0). */
  http10 = false;
  /** The request line's version is not 1.x (llhttp reads any digit, e.g. `HTTP/2.0` in HTTP/1.1 syntax). */
  otherVersion: string | undefined;
  keepAlive = false;
  /** llhttp saw Connection: upgrade with Upgrade, or a CONNECT. */
  upgrade = false;
  /** The value of an Expect header, if any. */
  expect: string | undefined;
  /** The Transfer-Encoding values, joined with ", " when there are several headers. */
  transferEncoding: string | undefined;
  /** Bytes of URL and header names and values so far (node:http's maxHeaderSize counts the same). */
  headerBytes = 0;
  /** The head grew past the limit: the parse error that follows means 431. */
  overflow = false;
  /** Between headers complete and the next message: header callbacks now are trailers, which are dropped. */
  private inBody = false;
  private inField = false;

  constructor(sink: RequestSink, maxHeaderBytes: number) {
    this.sink = sink;
    this.maxHeaderBytes = maxHeaderBytes;
  }

  onMessageBegin(): number {
    this.url = '';
    this.rawHeaders = [];
    this.method = '';
    this.expect = undefined;
    this.transferEncoding = undefined;
    this.headerBytes = 0;
    this.inBody = false;
    this.inField = false;
    this.sink.headStarted();
    return CONTINUE;
  }

  onUrl(text: string): number {
    this.url += text;
    return this.count(text.length);
  }

  onStatus(): number {
    return CONTINUE;
  }

  onHeaderField(text: string): number {
    if (this.inBody) return CONTINUE;
    const h = this.rawHeaders;
    if (this.inField) h[h.length - 1] += text;
    else {
      h.push(text);
      this.inField = true;
    }
    return this.count(text.length);
  }

  onHeaderValue(text: string): number {
    if (this.inBody) return CONTINUE;
    const h = this.rawHeaders;
    if (this.inField) {
      h.push(text);
      this.inField = false;
    } else h[h.length - 1] += text;
    return this.count(text.length);
  }

  onHeadersComplete(_status: number, upgrade: boolean, keepAlive: boolean): number {
    this.inBody = true;
    this.upgrade = upgrade;
    this.keepAlive = keepAlive;
    const p = this.parser as HttpParser;
    this.method = p.method();
    const version = p.version();
    this.http10 = version === '1.0';
    this.otherVersion = version.startsWith('1.') ? undefined : version;
    const h = this.rawHeaders;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i] as string;
      if (name.length === 6 && name.toLowerCase() === 'expect') this.expect = h[i + 1];
      else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
        const v = h[i + 1] as string;
        this.transferEncoding = this.transferEncoding === undefined ? v : `${this.transferEncoding}, ${v}`;
      }
    }
    this.sink.headComplete();
    return BODY;
  }

  onBody(chunk: Buffer): number {
    this.sink.bodyChunk(chunk);
    return CONTINUE;
  }

  onMessageComplete(): number {
    this.inBody = false;
    this.sink.messageComplete();
    return PAUSE;
  }

  private count(n: number): number {
    this.headerBytes += n;
    if (this.headerBytes <= this.maxHeaderBytes) return CONTINUE;
    this.overflow = true;
    return HPE_USER;
  }
}

function ignore(): void {}
