// Keeps a request body's bytes (up to a limit) as they stream through, so the request can be sent once more.
import { Readable } from 'node:stream';
import type { ReplayableBody } from './dispatch.ts';

/**
 * How much of a request body is kept for sending it again: Linkerd's limit for retrying requests with bodies. A
 * larger body is not kept past it, and is never sent twice.
 */
export const REPLAY_LIMIT_BYTES = 64 * 1024;

/**
 * How long a retry waits for the rest of a body the peer answered before it ended. Past it the answer goes to the
 * client: a caller streaming its request (an upload fed slowly, a client-streaming gRPC call) waits for no one.
 */
export const REPLAY_WAIT_MS = 1000;

/**
 * The chunks pushed into a Readable (views of the socket's reads, no copy), up to REPLAY_LIMIT_BYTES. The stream's
 * owner calls pushed() with each chunk it pushes, and with null at the end.
 */
export class BodyKeeper implements ReplayableBody {
  private readonly stream: Readable;
  /** The chunks so far; undefined once the body outgrew the limit or cannot be sent again (trailers). */
  private kept: Buffer[] | undefined = [];
  private bytes = 0;
  private complete = false;

  constructor(stream: Readable) {
    this.stream = stream;
  }

  pushed(chunk: Buffer | null): void {
    if (chunk === null) this.complete = true;
    else if (this.kept !== undefined) {
      this.bytes += chunk.length;
      if (this.bytes > REPLAY_LIMIT_BYTES) this.kept = undefined;
      else this.kept.push(chunk);
    }
  }

  /** The body cannot be sent again (it ended with trailers, which a replay would not carry). */
  discard(): void {
    this.kept = undefined;
  }

  get replayable(): boolean {
    // A stream is destroyed once read to its end: only one destroyed before it (the client left) is lost.
    return this.kept !== undefined && (this.complete || !this.stream.destroyed);
  }

  whenComplete(then: (replay: Readable | undefined) => void): void {
    if (this.complete || !this.replayable) {
      then(this.replay());
      return;
    }
    const s = this.stream;
    const settle = (): void => {
      clearTimeout(timer);
      s.off('end', settle);
      s.off('close', settle);
      s.off('data', counted);
      then(this.replay());
    };
    // Past the limit: stop waiting (the rest flows away as the exchange would have let it).
    const counted = (): void => {
      if (this.kept === undefined) settle();
    };
    const timer = setTimeout(settle, REPLAY_WAIT_MS);
    s.on('end', settle);
    s.on('close', settle);
    s.on('data', counted);
    // The first attempt's reader let go of it: the rest is read here.
    s.resume();
  }

  private replay(): Readable | undefined {
    const kept = this.kept;
    if (kept === undefined || !this.complete) return undefined;
    return Readable.from(kept, { objectMode: false });
  }
}

/**
 * Keeps an HTTP/2 caller's request stream (node pushes its DATA into it): undefined when bytes were already buffered
 * before this was called (a request that waited for the first config), which would be missing from the copy.
 */
export function keepPushed(stream: Readable): BodyKeeper | undefined {
  if (stream.readableLength > 0 || stream.readableEnded) return undefined;
  const keeper = new BodyKeeper(stream);
  const push = stream.push;
  stream.push = function keepAndPush(this: Readable, chunk: unknown, encoding?: BufferEncoding): boolean {
    keeper.pushed(chunk === null ? null : (chunk as Buffer));
    return push.call(this, chunk, encoding);
  };
  stream.once('trailers', () => keeper.discard());
  return keeper;
}
