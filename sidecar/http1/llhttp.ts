// llhttp (the HTTP/1.1 parser inside Node and undici), loaded from undici's WebAssembly build, for raw-socket HTTP/1.1.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The slice of the WebAssembly global this file uses (the project's lib settings carry no DOM types). */
interface WasmApi {
  Module: new (bytes: Buffer) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** llhttp's parser types. */
export const REQUEST = 1;
export const RESPONSE = 2;

/** llhttp error numbers the callers act on (see llhttp's constants). */
export const HPE_OK = 0;
export const HPE_PAUSED = 21;
export const HPE_PAUSED_UPGRADE = 22;
export const HPE_USER = 24;

/** What on_headers_complete may return: parse a body, assume none (HEAD, 1xx/204/304), or stop for an upgrade. */
export const BODY = 0;
export const NO_BODY = 1;
export const NO_BODY_UPGRADE = 2;

/** What the other callbacks may return: go on, or pause the parser (execute returns HPE_PAUSED). */
export const CONTINUE = 0;
export const PAUSE = HPE_PAUSED;

/** Receives one parser's events. Strings are latin1 (HTTP/1.1 heads are bytes); body chunks are views of the input. */
export interface ParserEvents {
  onMessageBegin(): number;
  onUrl(text: string): number;
  onStatus(text: string): number;
  onHeaderField(text: string): number;
  onHeaderValue(text: string): number;
  /** statusCode is 0 for requests; upgrade and keepAlive as llhttp decided from the head. */
  onHeadersComplete(statusCode: number, upgrade: boolean, keepAlive: boolean): number;
  /** A view of the caller's input buffer: copy it if it must outlive the current tick's writes. */
  onBody(chunk: Buffer): number;
  onMessageComplete(): number;
}

interface LlhttpExports {
  memory: { buffer: ArrayBuffer };
  malloc(size: number): number;
  free(ptr: number): void;
  llhttp_alloc(type: number): number;
  llhttp_free(ptr: number): void;
  llhttp_execute(ptr: number, data: number, len: number): number;
  llhttp_finish(ptr: number): number;
  llhttp_resume(ptr: number): void;
  llhttp_resume_after_upgrade(ptr: number): void;
  llhttp_reset(ptr: number): void;
  llhttp_get_method(ptr: number): number;
  llhttp_get_http_major(ptr: number): number;
  llhttp_get_http_minor(ptr: number): number;
  llhttp_get_error_pos(ptr: number): number;
  llhttp_get_error_reason(ptr: number): number;
  llhttp_method_name(method: number): number;
}

// One instance per process; execute is synchronous and never re-entered, so one input buffer and one current parser do.
let llhttp: LlhttpExports | undefined;
let current: HttpParser | undefined;
let input: Buffer = Buffer.alloc(0);
let inputPtr = 0;
let inputSize = 0;
let memoryView: Buffer = Buffer.alloc(0);
const methodNames: string[] = [];

/**
 * A view of the wasm memory. Reading `memory.buffer` is a call into V8's C++ side, made here only when the view is
 * empty: at first, and after the memory grew (growing detaches the old ArrayBuffer, so every view of it has length 0).
 */
function memory(): Buffer {
  if (memoryView.length === 0) memoryView = Buffer.from((llhttp as LlhttpExports).memory.buffer);
  return memoryView;
}

function text(at: number, len: number): string {
  return memory().toString('latin1', at, at + len);
}

function cString(ptr: number): string {
  const mem = memory();
  const end = mem.indexOf(0, ptr);
  return mem.toString('latin1', ptr, end < 0 ? ptr : end);
}

function instance(): LlhttpExports {
  if (llhttp) return llhttp;
  let module: object;
  try {
    module = new Wasm.Module(require('undici/lib/llhttp/llhttp_simd-wasm.js') as Buffer);
  } catch {
    module = new Wasm.Module(require('undici/lib/llhttp/llhttp-wasm.js') as Buffer);
  }
  const own = (): HttpParser => current as HttpParser;
  const env = {
    wasm_on_message_begin: () => own().events.onMessageBegin(),
    wasm_on_url: (_p: number, at: number, len: number) => own().events.onUrl(text(at, len)),
    wasm_on_status: (_p: number, at: number, len: number) => own().events.onStatus(text(at, len)),
    wasm_on_header_field: (_p: number, at: number, len: number) => own().events.onHeaderField(text(at, len)),
    wasm_on_header_value: (_p: number, at: number, len: number) => own().events.onHeaderValue(text(at, len)),
    wasm_on_headers_complete: (_p: number, status: number, upgrade: number, keepAlive: number) =>
      own().events.onHeadersComplete(status, upgrade === 1, keepAlive === 1),
    wasm_on_body: (_p: number, at: number, len: number) =>
      own().events.onBody(input.subarray(at - inputPtr, at - inputPtr + len)),
    wasm_on_message_complete: () => own().events.onMessageComplete(),
  };
  llhttp = new Wasm.Instance(module, { env }).exports as unknown as LlhttpExports;
  return llhttp;
}

/** The outcome of one execute call. */
export interface ExecuteResult {
  /** HPE_OK, HPE_PAUSED, HPE_PAUSED_UPGRADE, or an error number. */
  readonly code: number;
  /** Bytes of the input consumed (all of it when code is HPE_OK). */
  readonly consumed: number;
  /** llhttp's reason text when code is an error. */
  readonly reason: string;
}

const OK_RESULT = (consumed: number): ExecuteResult => ({ code: HPE_OK, consumed, reason: '' });

/** One llhttp parser (request or response side). Call free() when the connection ends. */
export class HttpParser {
  readonly events: ParserEvents;
  private ptr: number;

  constructor(type: typeof REQUEST | typeof RESPONSE, events: ParserEvents) {
    this.events = events;
    this.ptr = instance().llhttp_alloc(type);
  }

  /** Parse bytes; callbacks run synchronously and must not call execute on any parser. */
  execute(chunk: Buffer): ExecuteResult {
    const ll = instance();
    if (current) throw new Error('llhttp: execute re-entered from a parser callback');
    if (this.ptr === 0) throw new Error('llhttp: parser used after free');
    if (chunk.length > inputSize) {
      if (inputPtr) ll.free(inputPtr);
      inputSize = Math.ceil(chunk.length / 4096) * 4096;
      inputPtr = ll.malloc(inputSize);
    }
    memory().set(chunk, inputPtr);
    let code: number;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the wasm callbacks find their parser here
    current = this;
    input = chunk;
    try {
      code = ll.llhttp_execute(this.ptr, inputPtr, chunk.length);
    } finally {
      current = undefined;
      input = EMPTY;
    }
    if (code === HPE_OK) return OK_RESULT(chunk.length);
    const consumed = ll.llhttp_get_error_pos(this.ptr) - inputPtr;
    const reason = code === HPE_PAUSED || code === HPE_PAUSED_UPGRADE ? '' : cString(ll.llhttp_get_error_reason(this.ptr));
    return { code, consumed, reason };
  }

  /** Tell the parser the stream ended (a response framed by close completes here). */
  finish(): number {
    const ll = instance();
    if (current) throw new Error('llhttp: finish re-entered from a parser callback');
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the wasm callbacks find their parser here
    current = this;
    try {
      return ll.llhttp_finish(this.ptr);
    } finally {
      current = undefined;
    }
  }

  /** Continue after a callback returned PAUSE (then execute the unconsumed bytes). */
  resume(): void {
    instance().llhttp_resume(this.ptr);
  }

  /** Start over for a new message stream (a pooled connection's next life). */
  reset(): void {
    instance().llhttp_reset(this.ptr);
  }

  /** The request method of the message being parsed (valid from onHeadersComplete on). */
  method(): string {
    const ll = instance();
    const index = ll.llhttp_get_method(this.ptr);
    return (methodNames[index] ??= cString(ll.llhttp_method_name(index)));
  }

  /** HTTP version as "1.1" / "1.0". */
  version(): string {
    const ll = instance();
    return `${ll.llhttp_get_http_major(this.ptr)}.${ll.llhttp_get_http_minor(this.ptr)}`;
  }

  free(): void {
    if (this.ptr === 0) return;
    instance().llhttp_free(this.ptr);
    this.ptr = 0;
  }
}

const EMPTY = Buffer.alloc(0);
