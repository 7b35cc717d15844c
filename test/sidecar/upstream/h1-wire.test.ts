// The HTTP/1.1 upstream pool on the wire: framing, 1xx, Connection: close, backpressure, abort, drain, idle, errors.
import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { Registry } from 'prom-client';
import { Cluster, compose, timeoutInterceptor } from '../../../sidecar/upstream/index.ts';
import type { DispatchController, DispatchHandler, DispatchRequest, Headers } from '../../../sidecar/upstream/index.ts';
import type { LocalReplyError } from '../../../sidecar/listeners/errors.ts';
import { DataPlaneMetrics } from '../../../sidecar/telemetry/metrics.ts';
import { closeServer, listen } from '../listeners/harness.ts';

interface Outcome {
  status: number;
  headers: Headers;
  body: string;
  trailers: Headers | undefined;
  error: LocalReplyError | undefined;
  statusAtError: number;
}

function cluster(port: number): Cluster {
  return new Cluster(
    { name: 'c', version: '1', kind: 'eds', lbPolicy: 'round-robin', connectTimeoutMs: 1000, protocol: 'http1', endpointsVersion: '1', endpoints: [{ address: '127.0.0.1', port, weight: 1, health: 'healthy' }] },
    '127.0.0.1',
    new DataPlaneMetrics(new Registry()).cluster('outbound', 'c'),
  );
}

function request(extra: Partial<DispatchRequest> = {}): DispatchRequest {
  return { cluster: 'c', method: 'GET', path: '/', authority: 'c.default', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs: 0, ...extra };
}

/** A handler collecting the outcome; `onData` may refuse chunks or act on the controller. */
function collect(
  onData?: (chunk: Buffer, c: DispatchController, out: Outcome) => boolean,
): { handler: DispatchHandler; done: Promise<Outcome>; controller: () => DispatchController } {
  let controller: DispatchController | undefined;
  const out: Outcome = { status: 0, headers: {}, body: '', trailers: undefined, error: undefined, statusAtError: 0 };
  let resolve!: (o: Outcome) => void;
  const done = new Promise<Outcome>((r) => (resolve = r));
  const handler: DispatchHandler = {
    onRequestStart(c) {
      controller = c;
    },
    onResponseStart(s, h) {
      out.status = s;
      out.headers = h;
    },
    onResponseData(chunk) {
      out.body += chunk.toString('latin1');
      return onData === undefined ? true : onData(chunk, controller as DispatchController, out);
    },
    onResponseEnd(t) {
      out.trailers = t;
      resolve(out);
    },
    onResponseError(err) {
      out.error = err;
      out.statusAtError = out.status;
      resolve(out);
    },
  };
  return { handler, done, controller: () => controller as DispatchController };
}

async function send(c: Cluster, extra: Partial<DispatchRequest> = {}): Promise<Outcome> {
  await new Promise((r) => setImmediate(r));
  const { handler, done } = collect();
  c.pick({ hash: undefined })!.pool.request(request(extra), handler, false);
  return done;
}

/** A raw server answering each request head (bodiless requests) with `respond`; records heads and connections. */
async function rawServer(respond: (socket: net.Socket, head: string, n: number) => void) {
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let closed = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => {
      closed++;
      sockets.delete(socket);
    });
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, i + 4);
        buf = buf.slice(i + 4);
        heads.push(head);
        respond(socket, head, heads.length);
      }
    });
  });
  const port = await listen(server);
  return {
    port,
    heads,
    connections: () => connections,
    closed: () => closed,
    close: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe('HTTP/1.1 upstream pool on the wire', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const f of cleanups.splice(0).reverse()) await f();
  });
  const raw = async (respond: (socket: net.Socket, head: string, n: number) => void) => {
    const s = await rawServer(respond);
    cleanups.push(s.close);
    return s;
  };
  const use = (port: number): Cluster => {
    const c = cluster(port);
    cleanups.push(() => c.close(0));
    return c;
  };

  it('reads chunked responses with trailers, then reuses the connection', async () => {
    const s = await raw((sock) =>
      sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\nx-sum: 6\r\n\r\n'),
    );
    const c = use(s.port);
    for (let i = 0; i < 2; i++) {
      const r = await send(c);
      expect(r.body).toBe('hello!');
      expect(r.trailers).toEqual({ 'x-sum': '6' });
      expect(r.headers['transfer-encoding']).toBeUndefined();
    }
    expect(s.connections()).toBe(1);
    expect(s.heads[0]).toMatch(/^GET \/ HTTP\/1\.1\r\nhost: c\.default\r\n/);
  });

  it('reads a body framed by the close, and does not reuse that connection', async () => {
    const s = await raw((sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end'));
    const c = use(s.port);
    expect((await send(c)).body).toBe('to the end');
    expect((await send(c)).body).toBe('to the end');
    expect(s.connections()).toBe(2);
  });

  it('does not reuse a connection after Connection: close', async () => {
    const s = await raw((sock) => sock.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok'));
    const c = use(s.port);
    expect((await send(c)).body).toBe('ok');
    await until(() => s.closed() === 1);
    expect(s.closed()).toBe(1);
    expect((await send(c)).body).toBe('ok');
    expect(s.connections()).toBe(2);
  });

  it('reads no body after HEAD, 204 and 304, keeps the connection, and skips 100 Continue', async () => {
    const s = await raw((sock, head, n) => {
      if (head.startsWith('HEAD')) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n');
      else if (n === 2) sock.write('HTTP/1.1 204 No Content\r\n\r\n');
      else if (n === 3) sock.write('HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n');
      else sock.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody');
    });
    const c = use(s.port);
    const head = await send(c, { method: 'HEAD' });
    expect([head.status, head.body, head.headers['content-length']]).toEqual([200, '', '50']);
    expect((await send(c)).status).toBe(204);
    expect((await send(c)).status).toBe(304);
    const cont = await send(c);
    expect([cont.status, cont.body]).toEqual([200, 'body']);
    expect(s.connections()).toBe(1);
  });

  it('streams a body of unknown length chunked, and sends a small known one with the head', async () => {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        seen.push(`${req.headers['transfer-encoding']} ${req.headers['content-length']}`);
        res.end(Buffer.concat(chunks));
      });
    });
    const port = await listen(server);
    cleanups.push(() => closeServer(server));
    const c = use(port);
    const body = new PassThrough();
    const pending = send(c, { method: 'POST', body });
    body.write('one ');
    setTimeout(() => body.end('two'), 20);
    expect((await pending).body).toBe('one two');
    const known = new PassThrough();
    known.end('hello');
    expect((await send(c, { method: 'PUT', body: known, headers: ['content-length', '5'] })).body).toBe('hello');
    expect(seen).toEqual(['chunked undefined', 'undefined 5']);

    const s = await raw(() => {});
    const c2 = use(s.port);
    const b2 = new PassThrough();
    b2.end('hello');
    const { handler } = collect();
    c2.pick({ hash: undefined })!.pool.request(request({ method: 'POST', body: b2, headers: ['content-length', '5'] }), handler, false);
    await until(() => s.heads.length === 1);
    // Head and body left in one write: the server's first read held both.
    const first = await new Promise<string>((r) => setTimeout(() => r(s.heads[0] as string), 20));
    expect(first).toContain('content-length: 5\r\n\r\n');
  });

  it('pauses the parser and the socket when the handler refuses data, and goes on after resume', async () => {
    const s = await raw((sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc');
      setTimeout(() => sock.write('def'), 30);
    });
    const c = use(s.port);
    let calls = 0;
    const { handler, done, controller } = collect(() => {
      calls++;
      return false;
    });
    c.pick({ hash: undefined })!.pool.request(request(), handler, false);
    // The first chunk arrives (however long that takes), then 'def' (written 30 ms after it) is held back while paused.
    await until(() => calls > 0);
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toBe(1);
    controller().resume();
    await until(() => calls === 2);
    controller().resume();
    const r = await done;
    expect(r.body).toBe('abcdef');
    expect(c.stat().endpoints[0]?.active).toBe(0);
  });

  it('closes the connection when the handler aborts mid-response, and never reuses it', async () => {
    const s = await raw((sock, _h, n) => {
      if (n === 1) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
      else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const c = use(s.port);
    const e = c.pick({ hash: undefined })!;
    const { handler } = collect((_chunk, ctl) => {
      ctl.abort();
      return true;
    });
    e.pool.request(request(), handler, false);
    await until(() => s.closed() === 1);
    expect(s.closed()).toBe(1);
    expect(e.pool.active).toBe(0);
    expect(e.load.active).toBe(0);
    expect((await send(c)).body).toBe('ok');
    expect(s.connections()).toBe(2);
  });

  it('answers a malformed response as 502 upstream_protocol_error (as Envoy) and a response cut short as upstream_reset', async () => {
    const s = await raw((sock, _h, n) => {
      if (n === 1) sock.write('HTTX/1.1 200 OK\r\n\r\n');
      else sock.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    });
    const c = use(s.port);
    const bad = await send(c);
    expect([bad.error?.status, bad.error?.reason]).toEqual([502, 'upstream_protocol_error']);
    expect(bad.error?.message).toContain('HPE_INVALID_CONSTANT');
    expect(bad.error?.message).toContain('not valid HTTP/1.1');
    const cut = await send(c);
    expect(cut.statusAtError).toBe(200);
    expect(cut.error?.reason).toBe('upstream_reset');
    expect(c.stat().endpoints[0]?.active).toBe(0);
  });

  it('times out with the route timeout interceptor and closes the connection', async () => {
    const s = await raw(() => {});
    const c = use(s.port);
    const dispatch = compose((req, h) => c.pick({ hash: undefined })!.pool.request(req, h, false), timeoutInterceptor);
    const { handler, done } = collect();
    dispatch(request({ timeoutMs: 50 }), handler);
    const r = await done;
    expect([r.error?.status, r.error?.reason]).toEqual([504, 'timeout']);
    await until(() => s.closed() === 1);
    expect(s.closed()).toBe(1);
  });

  it('drains a removed endpoint: the request in flight finishes, idle connections close at once', async () => {
    let hold: net.Socket | undefined;
    const s = await raw((sock, head) => {
      if (head.startsWith('GET /slow')) hold = sock;
      else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const c = use(s.port);
    const e = c.pick({ hash: undefined })!;
    // Two connections: one idle after /fast, one busy with /slow.
    const slow = send(c, { path: '/slow' });
    await until(() => hold !== undefined);
    expect((await send(c, { path: '/fast' })).body).toBe('ok');
    expect(s.connections()).toBe(2);
    c.update({ ...c.config, endpoints: [] });
    await until(() => s.closed() === 1);
    expect(s.closed()).toBe(1);
    hold?.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow');
    expect((await slow).body).toBe('slow');
    await until(() => s.closed() === 2);
    expect(s.closed()).toBe(2);
    expect(e.pool.connections).toBe(0);
  });

  it('retries a stale keep-alive failure on a new connection, not on another idle one', async () => {
    const served = new WeakMap<net.Socket, number>();
    const s = await raw((sock, head) => {
      const n = (served.get(sock) ?? 0) + 1;
      served.set(sock, n);
      if (head.startsWith('GET /stale') && n > 1) sock.destroy();
      else if (head.startsWith('GET /hold')) setTimeout(() => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 30);
      else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const c = use(s.port);
    // Two idle connections, both of which drop /stale.
    await Promise.all([send(c, { path: '/hold' }), send(c, { path: '/hold' })]);
    expect(s.connections()).toBe(2);
    const r = await send(c, { path: '/stale' });
    expect(r.error).toBeUndefined();
    expect(r.body).toBe('ok');
    expect(s.connections()).toBe(3);
  });

  it('closes an idle connection before the Keep-Alive timeout the server announced', async () => {
    const s = await raw((sock, _h, n) =>
      sock.write(`HTTP/1.1 200 OK\r\nKeep-Alive: timeout=${n === 1 ? 1 : 2}\r\nContent-Length: 0\r\n\r\n`),
    );
    const c = use(s.port);
    // timeout=1: closing a second early leaves no time, so the connection closes right after the response.
    await send(c);
    await until(() => s.closed() === 1);
    expect(s.closed()).toBe(1);
    await send(c);
    await new Promise((r) => setTimeout(r, 300));
    expect(s.closed()).toBe(1);
    await until(() => s.closed() === 2);
    expect(s.closed()).toBe(2);
  });
});
