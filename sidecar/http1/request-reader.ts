// Collects one HTTP/1.1 request head from llhttp's callbacks (URL, raw header pairs, byte count against the limit); the body stream; error names.
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { BODY, CONTINUE, HPE_USER, PAUSE } from './llhttp.ts';
import type { HttpParser, ParserEvents } from './llhttp.ts';
import { BodyKeeper } from '../upstream/replay-body.ts';

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
 * A request body as a stream: filled from the parser; `_read` tells the connection to read the socket again. Its
 * keeper holds its chunks up to a limit, so the request can be sent again (see replay-body.ts).
 */
export class RequestBody extends Readable {
  private readonly owner: { bodyWanted(): void };
  readonly keeper: BodyKeeper = new BodyKeeper(this);

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
    this.keeper.pushed(chunk);
    return super.push(chunk);
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
