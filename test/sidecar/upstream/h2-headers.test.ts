// sendTrailersSafely and firstValues: heads and trailers node:http2 would refuse are trimmed; nothing is thrown.
import http2 from 'node:http2';
import { describe, expect, it } from 'vitest';
import { firstValues, sendTrailersSafely } from '../../../sidecar/upstream/h2-headers.ts';

describe('sendTrailersSafely', () => {
  it('ends a real stream with no trailers when node refuses the ones given (a connection-specific field)', async () => {
    const server = http2.createServer();
    const received: Array<Record<string, unknown> | undefined> = [];
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.once('wantTrailers', () => sendTrailersSafely(stream, { connection: 'close', 'x-ok': '1' }));
      stream.end('body');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const ended = await new Promise<string>((resolve, reject) => {
        const st = session.request({ ':path': '/' });
        let body = '';
        let trailers: Record<string, unknown> | undefined;
        st.on('trailers', (t) => (trailers = { ...t }));
        st.on('data', (c: Buffer) => (body += String(c)));
        st.on('end', () => {
          received.push(trailers);
          resolve(body);
        });
        st.on('error', reject);
        st.end();
      });
      expect(ended).toBe('body');
      expect(received[0]?.['connection']).toBeUndefined();
    } finally {
      session.close();
      server.close();
    }
  });

  it('resets the stream when even empty trailers cannot be sent, and never throws', () => {
    let destroyed = false;
    const stream = {
      sendTrailers: () => {
        throw new Error('ERR_HTTP2_TRAILERS_ALREADY_SENT');
      },
      destroy: () => {
        destroyed = true;
      },
    } as unknown as http2.Http2Stream;
    expect(() => sendTrailersSafely(stream, { 'x-a': '1' })).not.toThrow();
    expect(destroyed).toBe(true);
  });

  it('firstValues keeps the first of repeated fields, Set-Cookie whole', () => {
    const head: Record<string, string | string[]> = { 'content-type': ['a', 'b'], 'set-cookie': ['x=1', 'y=2'], vary: 'accept' };
    expect(firstValues(head)).toEqual({
      'content-type': 'a',
      'set-cookie': ['x=1', 'y=2'],
      vary: 'accept',
    });
  });
});
