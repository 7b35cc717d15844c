import { describe, it, expect } from 'vitest';
import net from 'node:net';
import { encodeProxyHeader } from '../../../sidecar/upstream/index.ts';
import { closeServer, listen, startPair } from './harness.ts';

function send(port: number, data: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(data));
    let out = '';
    s.on('data', (c) => {
      out += c;
      s.end();
    });
    s.on('error', () => {});
    s.on('close', () => resolve(out));
  });
}

describe('inbound listener', () => {
  it('forwards to the app port named by PROXY v2, the first app port without a header, and refuses other ports', async () => {
    const mk = (name: string) => net.createServer((s) => s.on('data', (c) => s.write(`${name}:${c}`)));
    const a = mk('a');
    const b = mk('b');
    const pa = await listen(a);
    const pb = await listen(b);
    const pair = await startPair([pa, pb]);
    try {
      expect(await send(pair.inbound, Buffer.concat([encodeProxyHeader('10.1.0.1', 0, '127.0.0.1', pb), Buffer.from('hi')]))).toBe('b:hi');
      expect(await send(pair.inbound, Buffer.concat([encodeProxyHeader('10.1.0.1', 0, '127.0.0.1', pa), Buffer.from('hi')]))).toBe('a:hi');
      expect(await send(pair.inbound, Buffer.from('plain'))).toBe('a:plain');
      expect(await send(pair.inbound, Buffer.concat([encodeProxyHeader('10.1.0.1', 0, '127.0.0.1', 1), Buffer.from('hi')]))).toBe('');
    } finally {
      await pair.close();
      await closeServer(a);
      await closeServer(b);
    }
  });
});
