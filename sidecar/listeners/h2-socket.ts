// Hands a socket that has already sent the HTTP/2 preface (some of it read) to a node:http2 server.
import type http2 from 'node:http2';
import type net from 'node:net';

/**
 * Gives `socket` to `server` as a new connection, with `early` (the bytes read so far, from the preface on) put back
 * first: the session reads the socket's handle itself, after what is buffered on the socket. Node's HTTP/2 server
 * refuses a TLS socket that negotiated no ALPN protocol as "unknown protocol"; sidecars negotiate none, and this one
 * has sent the preface, so it is recorded as h2.
 */
export function giveToH2Server(server: http2.Http2Server, socket: net.Socket, early: Buffer): void {
  const tlsSocket = socket as net.Socket & { alpnProtocol?: string | false | null };
  if (tlsSocket.alpnProtocol === false) tlsSocket.alpnProtocol = 'h2';
  socket.pause();
  if (early.length > 0) socket.unshift(early);
  server.emit('connection', socket);
}
