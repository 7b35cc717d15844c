// The ADS read path's framing: gRPC messages reassembled from HTTP/2 DATA chunks into reused buffers, not fresh ones.
import { noteReadBytes } from '../heap.ts';
import { tracer } from './log.ts';
import { POOL_MIN, releaseBuffer, takeBuffer } from './read-buffers.ts';
import { compactNames } from './request-names.ts';

const trace = tracer('xds');

const HEADER = 5;

/**
 * Splits a gRPC request stream into framed messages (1-byte compressed flag, 4-byte length, payload), like grpc-js'
 * StreamDecoder (same interface, same limit check and error text). A large message is copied into a pooled buffer
 * as its chunks arrive (many streams may be midway through one: HTTP/2 flow control splits large requests) and
 * compacted at once when complete (compactNames, request-names.ts: its names replaced by a recent equal run), so the
 * buffer goes straight back to the free list; a small one is joined from views of its chunks. SotW calls only.
 */
export class PooledStreamDecoder {
  readonly maxReadMessageLength: number;
  private readonly header = Buffer.alloc(HEADER);
  private headerFilled = 0;
  /** Payload bytes still to come for the current message; -1 while reading a header. */
  private remaining = -1;
  private length = 0;
  private parts: Buffer[] = [];
  /** The pooled buffer a large message is being copied into, and how far it is filled. */
  private target: Buffer | undefined;
  private at = 0;
  /** The names runs of this stream's last large requests (see compactNames). */
  private readonly runs: Buffer[] = [];

  constructor(maxReadMessageLength: number) {
    this.maxReadMessageLength = maxReadMessageLength;
  }

  write(data: Buffer): Buffer[] {
    // The HTTP/2 read buffer behind `data` is garbage once this returns; see heap.ts for why it is counted.
    noteReadBytes(data.length);
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < data.length) {
      if (this.remaining < 0) {
        const n = Math.min(HEADER - this.headerFilled, data.length - pos);
        data.copy(this.header, this.headerFilled, pos, pos + n);
        this.headerFilled += n;
        pos += n;
        if (this.headerFilled < HEADER) break;
        this.headerFilled = 0;
        const length = this.header.readUInt32BE(1);
        if (this.maxReadMessageLength !== -1 && length > this.maxReadMessageLength) {
          throw new Error(`Received message larger than max (${length} vs ${this.maxReadMessageLength})`);
        }
        this.length = length;
        this.remaining = length;
        // A large message is copied into its pooled buffer as its bytes arrive, not kept as views until its last
        // byte: a view would keep the whole HTTP/2 read buffer it points into alive, and with 1000 streams midway
        // through their ACKs those buffers outlive young-generation collections and wait for a full GC.
        if (HEADER + length >= POOL_MIN) {
          this.target = takeBuffer(HEADER + length);
          this.header.copy(this.target, 0);
          this.at = HEADER;
        }
      }
      const n = Math.min(this.remaining, data.length - pos);
      if (n > 0) {
        const target = this.target;
        if (target !== undefined) this.at += data.copy(target, this.at, pos, pos + n);
        else this.parts.push(data.subarray(pos, pos + n));
      }
      this.remaining -= n;
      pos += n;
      if (this.remaining === 0) out.push(this.finish());
    }
    return out;
  }

  private finish(): Buffer {
    const size = HEADER + this.length;
    const parts = this.parts;
    this.parts = [];
    this.remaining = -1;
    const framed = this.target;
    this.target = undefined;
    if (framed === undefined) return Buffer.concat([this.header, ...parts], size);
    const compact = framed[0] === 0 ? compactNames(framed, this.runs) : undefined;
    if (!compact) return framed; // lent until the request reader has decoded it
    releaseBuffer(framed);
    return compact;
  }
}

interface DecoderHolder {
  decoder: { write(data: Buffer): Buffer[]; maxReadMessageLength: number };
}

function isDecoderHolder(node: object): node is DecoderHolder {
  const decoder = (node as { decoder?: unknown }).decoder;
  return (
    typeof decoder === 'object' &&
    decoder !== null &&
    typeof (decoder as DecoderHolder['decoder']).write === 'function' &&
    typeof (decoder as DecoderHolder['decoder']).maxReadMessageLength === 'number'
  );
}

/**
 * Swaps the pooled decoder into a grpc-js server call, before it reads anything (in the method handler). grpc-js
 * exposes no public hook for this, so the walk down its call chain is defensive: when the shape differs it leaves
 * grpc-js' own decoder in place and returns false (correct, only slower).
 */
export function usePooledDecoder(call: object): boolean {
  let node: unknown = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && node && typeof node === 'object'; depth++) {
    if (isDecoderHolder(node)) {
      node.decoder = new PooledStreamDecoder(node.decoder.maxReadMessageLength);
      return true;
    }
    node = (node as { nextCall?: unknown }).nextCall;
  }
  trace('grpc-js call has no decoder where expected; keeping its own');
  return false;
}
