// The proxy benchmark's load generator: response parsing, open-loop scheduling against a real server, wrk parsing.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getOnce, parseResponse, requestBytes } from './http1-conn.ts';
import { runOpenLoop, runSequential } from './open-loop.ts';
import { parseWrk } from './wrk.ts';

describe('parseResponse', () => {
  it('waits for the whole head and a Content-Length body, then says how many bytes it took', () => {
    const full = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1');
    expect(parseResponse(full.subarray(0, 20))).toEqual({ kind: 'partial' });
    expect(parseResponse(full.subarray(0, 40))).toEqual({ kind: 'partial' });
    expect(parseResponse(full)).toEqual({ kind: 'done', status: 200, consumed: 43, close: false });
  });

  it('reads chunked bodies to the last chunk and notices Connection: close and HTTP/1.0', () => {
    const chunked = Buffer.from('HTTP/1.1 503 x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    expect(parseResponse(chunked)).toEqual({ kind: 'done', status: 503, consumed: chunked.length, close: true });
    expect(parseResponse(chunked.subarray(0, chunked.length - 2))).toEqual({ kind: 'partial' });
    expect(parseResponse(Buffer.from('HTTP/1.0 204 No Content\r\n\r\n'))).toMatchObject({ status: 204, close: true });
  });

  it('refuses bytes that are not an HTTP/1.x response', () => {
    expect(() => parseResponse(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow(/not an HTTP/);
  });

  it('builds a GET with the Host the sidecar routes on', () => {
    expect(requestBytes('bench.default').toString()).toMatch(/^GET \/ HTTP\/1\.1\r\nHost: bench\.default\r\n.*\r\n\r\n$/s);
  });
});

describe('open-loop and sequential load against a real server', () => {
  let server: http.Server;
  let port = 0;
  const hosts: string[] = [];
  let slowUntil = 0;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      hosts.push(req.headers.host ?? '');
      const body = 'x'.repeat(1024);
      const reply = () => res.writeHead(200, { 'content-length': body.length }).end(body);
      // While "slow", every answer takes 30 ms: a stall the generator must count from the scheduled time.
      if (performance.now() < slowUntil) setTimeout(reply, 30);
      else reply();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('sends at the fixed rate over keep-alive connections and records every answer', async () => {
    const r = await runOpenLoop({ host: '127.0.0.1', port, authority: 'bench.default', rate: 400, durationMs: 500, warmupMs: 100, connections: 4 });
    expect(r.count).toBe(200);
    expect(r.errors).toBe(0);
    expect(r.non2xx).toBe(0);
    // Never faster than the clock (a loaded machine may make it slower; that is not what this checks).
    expect(r.achievedRate).toBeGreaterThan(0);
    expect(r.achievedRate).toBeLessThan(450);
    expect(r.latency.p50).toBeGreaterThan(0);
    expect(r.latency.p50).toBeLessThanOrEqual(r.latency.p99);
    expect(hosts.at(-1)).toBe('bench.default');
  });

  it('counts queueing behind a stall in the latency (no coordinated omission) but not in the service time', async () => {
    slowUntil = performance.now() + 100_000;
    try {
      // One connection, 200 rps (5 ms apart), 30 ms answers: requests queue, each waits longer than the last.
      const r = await runOpenLoop({
        host: '127.0.0.1',
        port,
        authority: 'x',
        rate: 200,
        durationMs: 300,
        warmupMs: 0,
        connections: 1,
        maxConnections: 1,
      });
      expect(r.count).toBe(60);
      expect(r.service.p50).toBeGreaterThanOrEqual(29);
      expect(r.service.p50).toBeLessThan(200);
      // The last request was scheduled at 295 ms and answered after all 60 × 30 ms: about 1.5 s late.
      expect(r.latency.max).toBeGreaterThan(1000);
      expect(r.queued).toBeGreaterThan(40);
    } finally {
      slowUntil = 0;
    }
  });

  it('runs one request at a time in sequential mode', async () => {
    // A second, not 200 ms: more than 10 requests one after another must not need a fast machine (a loaded 2-core one
    // managed 7 in 200 ms); a request here takes well under a millisecond when the process gets the CPU.
    const r = await runSequential({ host: '127.0.0.1', port, authority: 'bench.default', durationMs: 1000, warmupMs: 20 });
    expect(r.count).toBeGreaterThan(10);
    expect(r.errors).toBe(0);
    expect(r.connectionsOpened).toBe(1);
    expect(r.sendLag.max).toBe(0);
    expect(await getOnce('127.0.0.1', port, 'bench.default')).toBe(200);
  });
});

describe('parseWrk', () => {
  it('reads the rate, the request count and every kind of error', () => {
    const text = `Running 5s test @ http://127.0.0.2:40000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.20ms  20.00ms   90.00%
    Req/Sec    15.61k     1.02k   17.00k    80.00%
  77706 requests in 5.00s, 88.94MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  15541.20
Transfer/sec:     17.79MB
`;
    expect(parseWrk(text)).toEqual({ requestsPerSec: 15541.2, requests: 77706, errors: 12 });
    expect(() => parseWrk('nothing')).toThrow(/Requests\/sec/);
  });
});
