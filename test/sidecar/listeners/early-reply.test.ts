// An app that answers an upload before reading it (an early 413) and closes as nginx and Go do: the caller gets that answer.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster, closeServer, endpoint, listen, mesh, request, route, startPair } from './harness.ts';
import type { Pair } from './harness.ts';

const RAW = 'outbound|80||raw.default.svc.cluster.local';

describe('an app that answers before reading the body, then closes (lingering)', () => {
  let pair: Pair;
  let app: net.Server;

  beforeAll(async () => {
    // Reads the request head only, answers 413, then half-closes and drops the rest of the body.
    app = net.createServer({ allowHalfOpen: true }, (s) => {
      let head = '';
      s.on('data', (d: Buffer) => {
        if (head.includes('\r\n\r\n')) return;
        head += d.toString('latin1');
        // nginx's and Go's lingering close: FIN after the answer, the rest of the body read and dropped.
        if (head.includes('\r\n\r\n')) s.end('HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig\n');
      });
      s.on('error', () => {});
      s.on('end', () => s.destroy());
    });
    const port = await listen(app);
    pair = await startPair([port]);
    pair.client.update(mesh([cluster(RAW, [endpoint(port, pair.inbound)])], [{ name: 'raw', domains: ['raw'], routes: [route(RAW)] }]));
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app);
  });

  it('passes the app\'s 413 on every time, whatever the body\'s size', async () => {
    const statuses: number[] = [];
    for (const size of [100_000, 1_000_000, 5_000_000, 1_000_000, 5_000_000]) {
      const r = await request(pair.outbound, { host: 'raw', method: 'POST', path: '/upload', body: Buffer.alloc(size, 'x') }).catch(() => ({ status: -1 }));
      statuses.push(r.status);
    }
    expect(statuses).toEqual([413, 413, 413, 413, 413]);
  });
});
