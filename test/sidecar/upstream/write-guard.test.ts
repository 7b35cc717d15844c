// The write guard: a socket whose peer answered and then reset it stays readable, so the answer is read, not lost.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { guardWrites, writeRefused } from '../../../sidecar/upstream/index.ts';
import { closeServer, listen } from '../listeners/harness.ts';

const ANSWER = 'HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n';

let server: net.Server | undefined;
afterEach(async () => {
  if (server !== undefined) await closeServer(server);
  server = undefined;
});

/** A peer that answers after its first bytes and closes with the rest unread: its kernel resets the connection. */
async function rudePeer(): Promise<number> {
  server = net.createServer((s) => {
    s.once('data', () => {
      s.pause();
      s.write(ANSWER);
      s.destroy();
    });
    s.on('error', () => {});
  });
  return listen(server);
}

interface Outcome {
  read: string;
  refused: string[];
  writeErrors: number;
  closedBy: string;
}

/** Writes 64 KiB chunks until the socket refuses (or 8 MiB went), then reads what the peer sent to the end. */
function uploadTo(port: number, guarded: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const out: Outcome = { read: '', refused: [], writeErrors: 0, closedBy: 'close' };
    if (guarded) guardWrites(socket, (s, err) => out.refused.push(`${s === socket} ${err.code ?? ''}`));
    socket.on('data', (c: Buffer) => (out.read += c.toString('latin1')));
    socket.on('error', (err: NodeJS.ErrnoException) => (out.closedBy = `error ${err.code ?? ''}`));
    socket.on('close', () => resolve(out));
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let sent = 0;
    const pump = (): void => {
      while (out.refused.length === 0 && !socket.destroyed && sent < 8 * 1024 * 1024) {
        sent += chunk.length;
        if (!socket.write(chunk, (err) => err && out.writeErrors++)) {
          socket.once('drain', pump);
          return;
        }
      }
      if (out.refused.length > 0 || sent >= 8 * 1024 * 1024) socket.end();
    };
    socket.once('connect', () => {
      socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n');
      pump();
    });
    // Refused writes are reported on a later tick: the pump looks again then.
    const poll = setInterval(() => {
      if (out.refused.length > 0) {
        clearInterval(poll);
        pump();
      }
    }, 5);
    socket.once('close', () => clearInterval(poll));
  });
}

describe('guardWrites', () => {
  it('reports a refused write once and keeps the socket readable: the peer\'s answer is read', async () => {
    const port = await rudePeer();
    for (let i = 0; i < 5; i++) {
      const out = await uploadTo(port, true);
      expect(out.read).toBe(ANSWER);
      expect(out.refused).toHaveLength(1);
      expect(out.refused[0]).toMatch(/^true (EPIPE|ECONNRESET)$/);
      expect(out.writeErrors).toBe(0);
    }
  });

  it('remembers the refusal; a socket never refused has none', async () => {
    const port = await rudePeer();
    const socket = net.connect({ host: '127.0.0.1', port });
    guardWrites(socket, () => {});
    expect(writeRefused(socket)).toBeUndefined();
    socket.on('error', () => {});
    const refused = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      socket.on('close', () => resolve(writeRefused(socket)));
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = (): void => {
        for (let i = 0; i < 200 && !socket.destroyed; i++) socket.write(chunk);
        if (!socket.destroyed && writeRefused(socket) === undefined) setTimeout(pump, 5);
        else socket.destroy();
      };
      socket.once('connect', pump);
    });
    expect(refused?.code).toMatch(/^(EPIPE|ECONNRESET)$/);
  });
});
