// HTTP/2 server helpers: hand over a socket that already sent the preface, and log why node:http2 ended a session.
import type http2 from 'node:http2';
import type net from 'node:net';
import type { Logger } from '../log.ts';

/**
 * Gives `socket` to `server` as a new connection, with `early` (the bytes read so far, from the preface on) put back
 * first: the session reads the socket's handle itself, after what is buffered on the socket. Node's HTTP/2 server
 * refuses a TLS socket that negotiated no ALPN protocol as "unknown protocol"; sidecars negotiate none, and this one
 * has sent the preface, so it is recorded as h2.
 */
export function giveToH2Server(server: http2.Http2Server, socket: net.Socket, early: Buffer | undefined): void {
  const tlsSocket = socket as net.Socket & { alpnProtocol?: string | false | null };
  if (tlsSocket.alpnProtocol === false) tlsSocket.alpnProtocol = 'h2';
  // Our listeners accept half-open connections (HTTP/1.1 and TCP need them); an HTTP/2 client that closes its side
  // without a GOAWAY is gone, and its session must end (node:http2 does not end it, and the socket would sit in
  // CLOSE-WAIT for ever).
  socket.allowHalfOpen = false;
  socket.once('end', endSession);
  socket.pause();
  if (early !== undefined && early.length > 0) socket.unshift(early);
  server.emit('connection', socket);
}

function endSession(this: net.Socket): void {
  // The session closes after its streams, whose client left with the connection: destroy now.
  this.destroy();
}

/** Socket errors that only mean the client went away. */
const GONE = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ERR_STREAM_PREMATURE_CLOSE']);

/**
 * Logs why node:http2 ended a client's session: a protocol error or one of its flood defences (pings, settings,
 * rapid resets), which end in a GOAWAY the client may not explain. A client that just went away stays at debug.
 */
export function logSessionErrors(server: http2.Http2Server, log: Logger, listener: string): void {
  server.on('session', (session: http2.ServerHttp2Session) => {
    const remote = session.socket?.remoteAddress;
    session.on('error', (err: NodeJS.ErrnoException) => {
      const fields = { listener, remote, code: err.code, error: err.message };
      if (err.code !== undefined && GONE.has(err.code)) log.debug('HTTP/2 client session failed', fields);
      else log.warn('HTTP/2 client session closed on a protocol error (node:http2 answered with GOAWAY)', fields);
    });
  });
}

/**
 * Sends a GOAWAY to sessions with no frame either way for `ms` (streams in flight finish; no new ones), as Envoy's
 * idle_timeout ends idle downstream connections: a client that keeps a connection open and unused does not hold it
 * for ever.
 */
export function closeIdleSessions(server: http2.Http2Server, ms: number): void {
  server.on('session', (session: http2.ServerHttp2Session) => {
    // Decided after the turn's I/O (setImmediate runs after the poll phase): the timeout is a timer, and timers run
    // before I/O, so once the process was held past it, frames that came meanwhile are read first (then it re-arms).
    const fired = (): void => {
      const read = session.socket.bytesRead;
      const written = session.socket.bytesWritten;
      setImmediate(() => {
        if (session.closed || session.destroyed) return;
        if (session.socket.bytesRead !== read || session.socket.bytesWritten !== written) session.setTimeout(ms, fired);
        else session.close();
      });
    };
    session.setTimeout(ms, fired);
  });
}
