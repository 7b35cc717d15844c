// Keeps a socket readable after the peer refused a write (EPIPE, ECONNRESET), so an answer it sent first is still read.
import type net from 'node:net';

/** Write errors that mean the peer stopped reading (closed or reset): what it sent before may still be unread. */
const REFUSED = new Set(['EPIPE', 'ECONNRESET']);

type WriteCallback = (error?: Error | null) => void;
type WriteFn = (this: net.Socket, chunk: unknown, encoding: BufferEncoding, cb: WriteCallback) => void;
type WritevFn = (this: net.Socket, chunks: Array<{ chunk: unknown; encoding: BufferEncoding }>, cb: WriteCallback) => void;

/** Told once, on a later tick, that the peer refused a write on `socket`. */
export type OnRefused = (socket: net.Socket, err: NodeJS.ErrnoException) => void;

interface Guard {
  readonly socket: net.Socket;
  readonly write: WriteFn;
  readonly writev: WritevFn | undefined;
  readonly onRefused: OnRefused;
  /** The callback of the write in flight (a Writable has at most one). */
  cb: WriteCallback | undefined;
  refused: NodeJS.ErrnoException | undefined;
  /** Made once per socket: the callback handed to the socket's own write. */
  readonly settle: WriteCallback;
}

const kGuard = Symbol('skein.writeGuard');
type Guarded = net.Socket & { [kGuard]?: Guard };

/**
 * Node treats a failed write as fatal: the socket is destroyed at once, and with it whatever the peer sent before it
 * reset the connection, still in our kernel buffer (Linux keeps received bytes readable after a reset). An app that
 * answers an upload early (a 413) and closes with the body unread resets the connection, so its answer was lost.
 *
 * After this, a write the peer refuses (EPIPE, ECONNRESET) is reported once to `onRefused` instead (on the next
 * tick), and it and every
 * later write are taken as done without going out: the socket stays open for reading, to its end or its read error.
 * The caller stops writing and reads the answer. Costs nothing per write beyond a call; allocates once per socket
 * (a second call on the same socket does nothing).
 */
export function guardWrites(socket: net.Socket, onRefused: OnRefused): void {
  const s = socket as Guarded;
  if (s[kGuard] !== undefined) return;
  const guard: Guard = {
    socket,
    write: s._write as WriteFn,
    writev: s._writev as WritevFn | undefined,
    onRefused,
    cb: undefined,
    refused: undefined,
    settle: (err) => {
      const cb = guard.cb as WriteCallback;
      guard.cb = undefined;
      const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
      if (code === undefined || !REFUSED.has(code)) {
        cb(err);
        return;
      }
      const first = guard.refused === undefined;
      if (first) guard.refused = err as NodeJS.ErrnoException;
      cb();
      // Not from inside the write: the caller may be in a pipe's or a body's 'data' handler.
      if (first) process.nextTick(guard.onRefused, guard.socket, err as NodeJS.ErrnoException);
    },
  };
  s[kGuard] = guard;
  s._write = guardedWrite;
  if (guard.writev !== undefined) s._writev = guardedWritev;
}

/** The write error the peer refused with, once it has (see guardWrites). */
export function writeRefused(socket: net.Socket): NodeJS.ErrnoException | undefined {
  return (socket as Guarded)[kGuard]?.refused;
}

function guardedWrite(this: net.Socket, chunk: unknown, encoding: BufferEncoding, cb: WriteCallback): void {
  const g = (this as Guarded)[kGuard] as Guard;
  if (g.refused !== undefined) {
    cb();
    return;
  }
  g.cb = cb;
  g.write.call(this, chunk, encoding, g.settle);
}

function guardedWritev(this: net.Socket, chunks: Array<{ chunk: unknown; encoding: BufferEncoding }>, cb: WriteCallback): void {
  const g = (this as Guarded)[kGuard] as Guard;
  if (g.refused !== undefined) {
    cb();
    return;
  }
  g.cb = cb;
  (g.writev as WritevFn).call(this, chunks, g.settle);
}
