// Answers an HTTP/2 connection whose app port refused the inbound pipe: each stream gets a readable 503 (gRPC: UNAVAILABLE).
import http2 from 'node:http2';
import type net from 'node:net';
import { replyH2 } from './local-reply.ts';
import { giveToH2Server } from './h2-socket.ts';

const kWhy = Symbol('skein.appDown');
type WithWhy = { [kWhy]?: string };

/**
 * The L4 pipe hands over an HTTP/2 connection (its bytes so far given back to the socket) when nothing accepts
 * connections on the app port. Every stream on it is answered `503 upstream_connect_error` naming the port, then the
 * session says GOAWAY, so the caller's next request opens a new connection, and reaches the app once it is back.
 */
export class AppDownH2 {
  private readonly server: http2.Http2Server;
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor() {
    this.server = http2.createServer({ maxSessionMemory: 4 });
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      session.on('error', () => {});
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      // After the turn's I/O (setImmediate): a request that came while the process was held past it is answered first.
      session.setTimeout(5000, () => setImmediate(() => session.closed || session.destroy()));
    });
    this.server.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      const why = (stream.session?.socket as unknown as WithWhy | undefined)?.[kWhy] ?? 'upstream connect error';
      const ct = headers['content-type'];
      replyH2(stream, 503, 'upstream_connect_error', why, ct !== undefined && ct.startsWith('application/grpc'));
      stream.session?.close();
    });
  }

  /** Takes `socket` (its unread bytes, from the preface on, in `early`); `why` is the text every stream gets. */
  handle(socket: net.Socket, early: Buffer, why: string): void {
    (socket as WithWhy)[kWhy] = why;
    giveToH2Server(this.server, socket, early);
  }

  close(): void {
    this.server.close();
    for (const s of this.sessions) s.destroy();
  }
}
