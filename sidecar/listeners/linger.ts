// The L4 pipes' close when the upstream side went away first: nginx's lingering close toward the client.
import type net from 'node:net';
import { guardWrites, writeRefused } from '../upstream/index.ts';
import { setIdleTimeout } from './socket-timeout.ts';

/** Lingering ends when the client sends nothing this long (nginx's lingering_timeout)... */
export const LINGER_IDLE_MS = 5_000;
/** ...or after this long in all (nginx's lingering_time). */
export const LINGER_MAX_MS = 30_000;

/**
 * The upstream of an L4 pipe (`upstream`) has closed or reset after answering: what it sent still reaches `client`,
 * then a FIN, and what the client still sends (the rest of an upload the app refused) is read and dropped until the
 * client closes, at most LINGER_IDLE_MS quiet or LINGER_MAX_MS in all; then `done`. Closing at once instead would,
 * with the client's bytes unread, make our kernel reset the connection, and the client (a peer sidecar, whose write
 * of the next body bytes then fails) could lose the answer.
 */
export function closeAfterUpstream(client: net.Socket, upstream: net.Socket, done: () => void): void {
  client.unpipe(upstream);
  // Nothing to deliver (the upstream never sent a byte: closed at once, as before), or all of it delivered and
  // nothing more to read from the client (the usual end of a connection both sides closed).
  if (client.destroyed || client.bytesWritten === 0 || (client.readableEnded && client.writableFinished)) {
    done();
    return;
  }
  drainClient(client, upstream);
  if (!client.writableEnded) client.end();
  setIdleTimeout(client, LINGER_IDLE_MS, done); // after the turn's I/O: bytes that came while the process was held count
  const timer = setTimeout(done, LINGER_MAX_MS);
  client.once('close', () => clearTimeout(timer));
}

/** Stops sending `client`'s bytes to `upstream` (it refused them); they are read and dropped from now on. */
export function drainClient(client: net.Socket, upstream: net.Socket): void {
  client.unpipe(upstream);
  if (client.listeners('data').includes(drop)) return;
  client.on('data', drop);
  client.resume();
}

function drop(): void {}

/**
 * Wires an L4 pipe for an upstream that answers early and then goes away (an app's 413 to an upload it will not
 * read): the upstream's writes are guarded (guardWrites); once it refused one, the client's bytes are dropped, and
 * once it has also ended, closeAfterUpstream runs. Returns that step (it runs once), for the caller's own upstream
 * error and close handlers.
 */
export function lingerAfterUpstream(client: net.Socket, upstream: net.Socket, done: () => void): () => void {
  let gone = false;
  const after = (): void => {
    if (gone) return;
    gone = true;
    closeAfterUpstream(client, upstream, done);
  };
  guardWrites(upstream, () => {
    drainClient(client, upstream);
    if (upstream.readableEnded) after();
  });
  upstream.on('end', () => {
    if (writeRefused(upstream) !== undefined) after();
  });
  return after;
}
