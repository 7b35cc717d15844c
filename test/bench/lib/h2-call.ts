// A bare gRPC bidi stream on node:http2 for the benchmark's simulated proxies: one session, one stream, framed messages.
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';

/**
 * Where a message spread over several DATA frames is joined: one buffer per process, reused (a fresh 200 KiB
 * buffer per large response cost the load generator more in allocation, page faults and GC than decoding it).
 */
let scratch = Buffer.allocUnsafeSlow(64 * 1024);
/** True while a message joined in `scratch` is being decoded and handled (a re-entrant join then allocates). */
let scratchInUse = false;

/** Joins `chunks` (`total` bytes) into `scratch`, growing it if needed. */
function joinInScratch(chunks: readonly Buffer[], total: number): Buffer {
  if (scratch.length < total) scratch = Buffer.allocUnsafeSlow(Math.max(total, 2 * scratch.length));
  let at = 0;
  for (const c of chunks) at += c.copy(scratch, at);
  return scratch.subarray(0, total);
}

/**
 * What the simulated proxies need of a gRPC call (write, cancel; 'data', 'error', 'end'), without grpc-js's
 * per-message machinery. The benchmark runs 1000 proxies on one core: with grpc-js's client, receiving and ACKing
 * a change took the load generator longer than the control plane took to send it, so the "convergence" it measured
 * was mostly the load generator's own queue. This sends and reads the same bytes (the gRPC length-prefixed
 * framing over HTTP/2, RFC 7540 and the gRPC HTTP/2 protocol) and decodes them with the same protobuf codecs.
 *
 * The bytes given to `deserialize`, and whatever the decoded message shares with them (protobufjs decodes `bytes`
 * fields as views of its input), are valid only until the 'data' listeners return: a message that arrived in
 * several DATA frames is joined in a buffer the next such message overwrites. Copy what must be kept.
 */
export class H2Call extends EventEmitter {
  private readonly session: http2.ClientHttp2Session;
  private readonly stream: http2.ClientHttp2Stream;
  private readonly serialize: (value: object) => Buffer | readonly Buffer[];
  private readonly deserialize: (bytes: Buffer) => object;
  /** Bytes not yet delivered (a message may span DATA frames, a frame may hold several messages). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes the first buffered message needs, prefix included; 0 while its prefix is incomplete. */
  private needed = 0;
  private ended = false;

  constructor(address: string, path: string, serialize: (value: object) => Buffer | readonly Buffer[], deserialize: (bytes: Buffer) => object) {
    super();
    this.serialize = serialize;
    this.deserialize = deserialize;
    // No Nagle: small ACKs must not wait for the server's delayed ACK (grpc-js sets the same).
    const url = new URL(`http://${address}`);
    // HTTP/2's default 64 KiB flow-control windows, as grpc-js clients (our sidecar, proxyless gRPC) use. No
    // session-memory cap (grpc-js lifts it too).
    this.session = http2.connect(url, {
      createConnection: () => net.connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port), noDelay: true }),
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    });
    this.stream = this.session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    this.stream.on('data', (chunk: Buffer) => this.onData(chunk));
    this.stream.on('response', (headers) => this.checkStatus(headers));
    this.stream.on('trailers', (trailers) => this.checkStatus(trailers));
    this.stream.on('error', (err) => this.fail(14, err.message));
    this.stream.on('close', () => {
      if (!this.ended) this.fail(14, `stream closed (HTTP/2 code ${this.stream.rstCode ?? 0})`);
    });
  }

  /**
   * Sends one message. The serializer may return it in parts (a SotW ACK: its small head, then the subscription's
   * names, encoded once and shared by every ACK): they are written as they are, behind the 5-byte prefix, in one
   * corked write, so a 50 KB ACK costs no copy and no 50 KB allocation (at 1000 proxies on one core, two such
   * copies per ACK put GC at ~40% of the load generator's busy time, inside the measured ACK time).
   */
  write(message: object): void {
    if (this.ended) return;
    const out = this.serialize(message);
    const parts: readonly Buffer[] = Buffer.isBuffer(out) ? [out] : out;
    const first = parts[0] ?? Buffer.alloc(0);
    let length = 0;
    for (const part of parts) length += part.length;
    const head = Buffer.allocUnsafe(5 + first.length);
    head[0] = 0;
    head.writeUInt32BE(length, 1);
    first.copy(head, 5);
    if (parts.length === 1) {
      this.stream.write(head);
      return;
    }
    this.stream.cork();
    this.stream.write(head);
    for (let i = 1; i < parts.length; i++) this.stream.write(parts[i]);
    this.stream.uncork();
  }

  cancel(): void {
    this.ended = true;
    this.stream.close(http2.constants.NGHTTP2_CANCEL);
    this.session.close();
  }

  private onData(chunk: Buffer): void {
    // A large message arrives in many DATA frames: collect them and join once it is complete (joining per frame
    // would copy a 2 MB response ~100 times).
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.needed === 0 && this.buffered >= 5) this.needed = 5 + this.peekLength();
    if (this.needed === 0 || this.buffered < this.needed) return;
    const inScratch = this.chunks.length > 1 && !scratchInUse;
    let buf: Buffer;
    if (this.chunks.length === 1) buf = this.chunks[0] as Buffer;
    else if (inScratch) buf = joinInScratch(this.chunks, this.buffered);
    else buf = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    this.needed = 0;
    if (inScratch) scratchInUse = true;
    try {
      buf = this.deliver(buf);
    } finally {
      if (inScratch) scratchInUse = false;
    }
    if (buf.length > 0 && !this.ended) {
      // The start of the next message: keep a copy if it sits in the scratch buffer.
      const rest = inScratch ? Buffer.from(buf) : buf;
      this.chunks.push(rest);
      this.buffered = rest.length;
      if (rest.length >= 5) this.needed = 5 + rest.readUInt32BE(1);
    }
  }

  /** Decodes and emits the complete messages at the start of `buf`; returns the incomplete rest. */
  private deliver(buf: Buffer): Buffer {
    while (buf.length >= 5) {
      const length = buf.readUInt32BE(1);
      if (buf.length < 5 + length) break;
      if (buf[0] !== 0) {
        this.fail(13, 'compressed message received; the simulated proxy asked for none');
        return buf.subarray(buf.length);
      }
      const message = buf.subarray(5, 5 + length);
      buf = buf.subarray(5 + length);
      let decoded: object;
      try {
        decoded = this.deserialize(message);
      } catch (err) {
        this.fail(13, `undecodable message: ${(err as Error).message}`);
        return buf.subarray(buf.length);
      }
      this.emit('data', decoded);
    }
    return buf;
  }

  /** The length prefix of the message at the start of the collected chunks (at least 5 bytes are buffered). */
  private peekLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= 5) return first.readUInt32BE(1);
    const head = Buffer.concat(this.chunks, 5);
    return head.readUInt32BE(1);
  }

  private checkStatus(headers: http2.IncomingHttpHeaders): void {
    const status = headers['grpc-status'];
    if (status === undefined) return;
    const code = Number(status);
    if (code === 0) {
      this.ended = true;
      this.emit('end');
    } else this.fail(code, decodeURIComponent(String(headers['grpc-message'] ?? '')));
  }

  private fail(code: number, details: string): void {
    if (this.ended) return;
    this.ended = true;
    this.emit('error', Object.assign(new Error(details), { code, details }));
    this.session.destroy();
  }
}
