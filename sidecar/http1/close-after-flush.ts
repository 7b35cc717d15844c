// Ends a downstream socket after its last bytes: reads on to the client's FIN, and cuts a client that never sends it.
import type net from 'node:net';

/**
 * After our last bytes are flushed and our FIN sent, how long the client has to close its side before the socket is
 * destroyed (Envoy's delayed_close_timeout, 1 s): a client that never closes must not hold the descriptor.
 */
export const CLOSE_LINGER_MS = 1000;

/**
 * Writes `text` (may be empty) and ends the socket. What the client sends meanwhile is read and dropped (no reset
 * that could destroy the reply before the client read it); once the client closes too, the socket closes, and
 * CLOSE_LINGER_MS after the flush it is destroyed either way.
 */
export function endAfterFlush(socket: net.Socket, text: string): void {
  socket.resume();
  socket.once('finish', () => {
    const linger = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  });
  if (text === '') socket.end();
  else socket.end(text, 'latin1');
}
