// HTTP/2 server helpers: a client's FIN without GOAWAY ends its session; an idle session gets a GOAWAY.
import http2 from 'node:http2';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { closeIdleSessions, giveToH2Server } from '../../../sidecar/listeners/h2-socket.ts';
import { H2_CLIENT_START } from './harness.ts';

/** A half-open-capable listener handing every connection to an h2 server, as the sidecar's listeners do. */
async function listener(idleMs: number): Promise<{ port: number; close: () => void }> {
  const h2 = http2.createServer();
  h2.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  if (idleMs > 0) closeIdleSessions(h2, idleMs);
  const server = net.createServer({ allowHalfOpen: true }, (socket) => giveToH2Server(h2, socket, undefined));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

describe('HTTP/2 sessions on half-open listeners', () => {
  it('closes a session whose client sent FIN without a GOAWAY', async () => {
    const l = await listener(0);
    try {
      const ended = await new Promise<boolean>((resolve) => {
        const s = net.connect(l.port, '127.0.0.1', () => {
          s.write(H2_CLIENT_START);
          setTimeout(() => s.end(), 50);
        });
        s.resume();
        s.on('end', () => resolve(true));
        s.on('error', () => resolve(true));
        setTimeout(() => resolve(false), 3000);
      });
      expect(ended).toBe(true);
    } finally {
      l.close();
    }
  });

  it('sends a GOAWAY to a session idle past the limit, after its requests were answered', async () => {
    const l = await listener(200);
    const session = http2.connect(`http://127.0.0.1:${l.port}`);
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ':path': '/' });
        let text = '';
        req.on('data', (c: Buffer) => (text += c.toString()));
        req.on('end', () => resolve(text));
        req.on('error', reject);
        req.end();
      });
      expect(body).toBe('ok');
      const goaway = await new Promise<boolean>((resolve) => {
        session.once('goaway', () => resolve(true));
        setTimeout(() => resolve(false), 3000);
      });
      expect(goaway).toBe(true);
    } finally {
      session.destroy();
      l.close();
    }
  });
});
