// Reusable buffers for reassembling large ADS requests: a free list per size class, lent out and given back.

/*
 * A SotW ACK repeats the proxy's whole subscription (~50 KB for 1000 names), arriving as several 16 KiB DATA
 * frames. grpc-js' decoder joins them with Buffer.concat into a fresh buffer per message: at 1000 proxies, 1000
 * new 50 KB buffers per change, whose first touch (page faults on memory the allocator just got from the kernel)
 * cost far more than the copy itself. Messages of POOL_MIN bytes or more are reassembled into buffers from a small
 * free list instead, given back by whoever last reads them (request-decoder.ts once it has compacted the message,
 * else request-names.ts once it has decoded it); a buffer nobody gives back is simply left to the GC.
 */
/** Smaller messages use Buffer.allocUnsafe (Node's own 8 KiB pool) as before. */
export const POOL_MIN = 4096;
/** Larger messages get a buffer of their own. */
export const POOL_MAX = 1024 * 1024;
/** Free buffers kept per size class (powers of two from 8 KiB to POOL_MAX). */
const FREE_PER_CLASS = 16;

const MIN_CLASS_BITS = 13;
const free: ArrayBuffer[][] = [];
/** Buffers handed out and not given back yet, with their size class. */
const lent = new WeakMap<ArrayBufferLike, number>();

/** Counters since the process started: pooled buffers allocated, reused from the free list, and given back. */
const stats = { allocated: 0, reused: 0, released: 0 };

export function pooledBufferStats(): Readonly<typeof stats> {
  return { ...stats };
}

function classOf(size: number): number {
  return Math.max(MIN_CLASS_BITS, Math.ceil(Math.log2(size)));
}

/** A buffer of `size` bytes for one message; pooled (to be given back with release()) from POOL_MIN to POOL_MAX. */
export function takeBuffer(size: number): Buffer {
  if (size < POOL_MIN || size > POOL_MAX) return Buffer.allocUnsafe(size);
  const bits = classOf(size);
  let ab = free[bits]?.pop();
  if (ab) stats.reused++;
  else {
    // Not zero-filled (new ArrayBuffer is): every byte is written before it is read.
    ab = Buffer.allocUnsafeSlow(2 ** bits).buffer as ArrayBuffer;
    stats.allocated++;
  }
  lent.set(ab, bits);
  return Buffer.from(ab, 0, size);
}

/**
 * Gives a pooled buffer (any view into it) back for reuse. Only for a caller that holds the last reference to its
 * bytes: nothing may read them afterwards. A second call, or a buffer that is not pooled, does nothing.
 */
export function releaseBuffer(buf: Uint8Array): void {
  const ab = buf.buffer;
  const bits = lent.get(ab);
  if (bits === undefined) return;
  lent.delete(ab);
  stats.released++;
  const list = (free[bits] ??= []);
  if (list.length < FREE_PER_CLASS) list.push(ab as ArrayBuffer);
}

/** Whether a buffer is a view into a pooled buffer still lent out (a reader must copy what it keeps of it). */
export function isPooled(buf: Uint8Array): boolean {
  return lent.has(buf.buffer);
}
