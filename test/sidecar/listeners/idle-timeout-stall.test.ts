// Socket idle timeouts after the sidecar was held (a GC pause, a starved CPU): bytes that came meanwhile count as activity.
import net from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OutboundListener } from '../../../sidecar/listeners/outbound.ts';
import { ClusterManager } from '../../../sidecar/upstream/index.ts';
import { DataPlaneMetrics } from '../../../sidecar/telemetry/metrics.ts';
import type { ListenerConfig } from '../../../sidecar/xds/model.ts';
import { cluster, closeServer, endpoint, freePort, H2_CLIENT_START, h2Frame, listen, mesh, startPair } from './harness.ts';
import type { Pair } from './harness.ts';

const DB = 'outbound|5432||db.default.svc.cluster.local';

/** Holds the process (as a GC pause would) from `at` ms for `ms` ms. */
function holdAt(at: number, ms: number): void {
  setTimeout(() => {
    const end = performance.now() + ms;
    while (performance.now() < end);
  }, at);
}

/** An outbound listener with a 1 s idle timeout and no config (requests are answered 503 after 50 ms). */
async function silentOutbound(): Promise<OutboundListener> {
  const metrics = new DataPlaneMetrics(new Registry());
  const listener = new OutboundListener(
    { host: '127.0.0.1', port: 0, requestHeadersTimeoutMs: 10_000, maxRequestHeadersKb: 60, idleTimeoutMs: 1000, configWaitMs: 50 },
    new ClusterManager('127.0.0.1', metrics),
    () => {},
    metrics,
  );
  await listener.listen();
  return listener;
}

describe('idle timeouts after a stall', () => {
  it('outbound: reads the first request that came while the process was held past the idle timeout of a silent connection', async () => {
    const listener = await silentOutbound();
    try {
      const out = await new Promise<string>((resolve) => {
        const s = net.connect(listener.port, '127.0.0.1', () => {
          // The request at 900 ms, the idle timeout at about 1000 ms. Held from 850 ms to 1300 ms: when the process
          // runs again both are due; the request is in the socket, not yet read. No config: it is answered 503.
          setTimeout(() => s.write('GET / HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n'), 900);
          holdAt(850, 450);
        });
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.on('error', () => {});
        s.on('close', () => resolve(text));
      });
      expect(out).toMatch(/^HTTP\/1\.1 503/);
    } finally {
      await listener.close(50);
    }
  }, 10_000);

  it('outbound: serves an HTTP/2 request that came while the process was held past the session idle timeout', async () => {
    const listener = await silentOutbound();
    try {
      // Raw frames: the request's bytes are on the wire as soon as it is written (node:http2 writes from an immediate).
      const frames = await new Promise<Buffer>((resolve) => {
        const s = net.connect(listener.port, '127.0.0.1', () => {
          s.write(H2_CLIENT_START);
          // GET http://ok/ (HPACK: :method GET, :scheme http, :path /, :authority ok), END_STREAM | END_HEADERS.
          const headers = Buffer.from([0x82, 0x86, 0x84, 0x41, 0x02, 0x6f, 0x6b]);
          // The request at 900 ms, the session's idle timeout at about 1000 ms; held from 850 ms to 1300 ms. No
          // config: it is answered 503.
          setTimeout(() => s.write(h2Frame(1, 0x5, 1, headers)), 900);
          holdAt(850, 450);
          setTimeout(() => s.destroy(), 2000);
        });
        const chunks: Buffer[] = [];
        s.on('data', (d: Buffer) => chunks.push(d));
        s.on('error', () => {});
        s.on('close', () => resolve(Buffer.concat(chunks)));
      });
      // The frames back on stream 1: a HEADERS (type 1) answer, not a refusal (RST_STREAM, type 3).
      const onStream1: number[] = [];
      for (let i = 0; i + 9 <= frames.length; i += 9 + frames.readUIntBE(i, 3)) {
        if ((frames.readUInt32BE(i + 5) & 0x7fffffff) === 1) onStream1.push(frames[i + 3]!);
      }
      expect(onStream1[0]).toBe(1);
    } finally {
      await listener.close(50);
    }
  }, 10_000);

  describe('TCP listener', () => {
    let pair: Pair;
    let echo: net.Server;
    let servicePort = 0;

    beforeAll(async () => {
      echo = net.createServer((s) => {
        s.on('data', (c) => s.write(`echo:${c}`));
        s.on('end', () => s.end());
      });
      const appPort = await listen(echo);
      pair = await startPair([appPort]);
      servicePort = await freePort();
      const tcp: ListenerConfig = { kind: 'tcp', name: `10.96.0.40_${servicePort}`, version: '1', address: '10.96.0.40', port: servicePort, cluster: DB, idleTimeoutMs: 1000 };
      pair.client.update(mesh([cluster(DB, [endpoint(appPort, pair.inbound)], { protocol: 'tcp' })], [], [tcp]));
      for (let i = 0; i < 100 && pair.client.tcpListenerStats()[0]?.bound !== true; i++) await new Promise((r) => setTimeout(r, 20));
    });

    afterAll(async () => {
      await pair.close();
      await closeServer(echo);
    });

    it('keeps a connection whose bytes came while the process was held past its idle timeout', async () => {
      const out = await new Promise<string>((resolve) => {
        const s = net.connect(servicePort, '127.0.0.1', () => {
          // The bytes at 900 ms, the idle timeout at about 1000 ms; held from 850 ms to 1300 ms.
          setTimeout(() => s.write('late'), 900);
          holdAt(850, 450);
          setTimeout(() => s.end(), 1800);
        });
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.on('error', () => {});
        s.on('close', () => resolve(text));
      });
      expect(out).toBe('echo:late');
    }, 10_000);
  });
});
