// The upstream connect timeout after an event-loop stall: a connection the kernel completed meanwhile is kept.
import http from 'node:http';
import net from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../../../sidecar/upstream/index.ts';
import type { Connector, DispatchHandler } from '../../../sidecar/upstream/index.ts';
import type { LocalReplyError } from '../../../sidecar/listeners/errors.ts';
import { DataPlaneMetrics } from '../../../sidecar/telemetry/metrics.ts';
import { closeServer, listen } from '../listeners/harness.ts';

function cluster(port: number, connectTimeoutMs: number, connector?: Connector): Cluster {
  return new Cluster(
    { name: 'c', version: '1', kind: 'eds', lbPolicy: 'round-robin', connectTimeoutMs, protocol: 'http1', endpointsVersion: '1', endpoints: [{ address: '127.0.0.1', port, weight: 1, health: 'healthy' }] },
    '127.0.0.1',
    new DataPlaneMetrics(new Registry()).cluster('outbound', 'c'),
    connector,
  );
}

/** Sends a GET; resolves with its status, or the local reply error it ended in. */
function send(c: Cluster): Promise<{ status: number; error: LocalReplyError | undefined }> {
  const e = c.pick({ hash: undefined })!;
  return new Promise((resolve) => {
    let status = 0;
    const handler: DispatchHandler = {
      onRequestStart() {},
      onResponseStart: (s) => (status = s),
      onResponseData: () => true,
      onResponseEnd: () => resolve({ status, error: undefined }),
      onResponseError: (error) => resolve({ status, error }),
    };
    e.pool.request({ cluster: 'c', method: 'GET', path: '/', authority: 'c', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs: 0 }, handler, false);
  });
}

/** Holds the event loop, as a long GC pause or a CPU-starved process does. */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

describe('upstream connect timeout', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const f of cleanups.splice(0).reverse()) await f();
  });

  it('keeps a connection that came up while the event loop was held past the timeout (timers run before I/O)', async () => {
    const server = http.createServer((_req, res) => res.end('ok'));
    const port = await listen(server);
    cleanups.push(() => closeServer(server));
    const c = cluster(port, 50);
    cleanups.push(() => c.close(0));
    const answer = send(c);
    block(200); // the TCP handshake completes in the kernel meanwhile; the timer is overdue when the loop turns
    expect(await answer).toEqual({ status: 200, error: undefined });
  });

  it('still times out a connection that does not come up', async () => {
    // A socket that never connects: what a SYN into the void looks like from here.
    const c = cluster(9, 50, () => new net.Socket());
    cleanups.push(() => c.close(0));
    const started = performance.now();
    const r = await send(c);
    expect(r.error?.reason).toBe('upstream_connect_error');
    expect(r.error?.message).toContain('ETIMEDOUT');
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });
});
