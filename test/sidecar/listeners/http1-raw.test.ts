// The outbound listener's own HTTP/1.1 (llhttp on the raw socket): pipelining, split reads, 100-continue, framing, HEAD, upgrades, disconnects.
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { cluster, closeServer, endpoint, listen, mesh, raw, request, route, startPair } from './harness.ts';
import type { Pair } from './harness.ts';

const APP = 'outbound|80||app.default.svc.cluster.local';
const BIG = 4 * 1024 * 1024;

/** An app with the responses these tests need: chunked, large, endless, and an echo of headers and body. */
async function startTestApp(): Promise<{ server: http.Server; port: number; closedEarly: () => number }> {
  let closedEarly = 0;
  const big = Buffer.alloc(BIG, 'x');
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '/';
      if (url === '/chunked') {
        res.write('a');
        res.write('bb');
        res.end('ccc');
      } else if (url === '/big') {
        res.setHeader('content-length', BIG);
        res.end(big);
      } else if (url === '/delay') {
        setTimeout(() => res.end('late'), 200);
      } else if (url === '/endless') {
        res.write('start');
        const t = setInterval(() => res.write('more'), 20);
        res.on('close', () => {
          clearInterval(t);
          if (!res.writableFinished) closedEarly++;
        });
      } else {
        const body = Buffer.concat(chunks).toString();
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ method: req.method, url, headers: req.headers, body }));
      }
    });
  });
  const port = await listen(server);
  return { server, port, closedEarly: () => closedEarly };
}

/** Writes `parts` (with `gapMs` between them) and collects the reply until `done(text)` or the peer closes. */
function converse(port: number, parts: Array<string | Buffer>, done: (text: string) => boolean, gapMs = 0): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const timer = setTimeout(finish, 4000);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      if (done(Buffer.concat(chunks).toString('latin1'))) setTimeout(finish, 250); // wait a little: does it close? (generous: CI runs suites side by side)
    });
    s.on('end', () => {
      closed = true;
      finish();
    });
    s.on('error', () => finish());
    s.on('connect', async () => {
      for (const p of parts) {
        if (s.destroyed) return;
        s.write(p);
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
  });
}

const count = (text: string, re: RegExp): number => (text.match(re) ?? []).length;

describe('outbound HTTP/1.1 on the raw socket', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startTestApp>>;

  beforeAll(async () => {
    app = await startTestApp();
    pair = await startPair([app.port], { headersTimeoutMs: 300, maxKb: 4 });
    pair.client.update(mesh([cluster(APP, [endpoint(app.port, pair.inbound)])], [{ name: 'app', domains: ['app'], routes: [route(APP)] }]));
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app.server);
  });

  it('answers pipelined requests in order and closes after the one asking for it', async () => {
    const reqs = ['/1', '/2', '/3'].map((p, i) => `GET ${p} HTTP/1.1\r\nHost: app\r\n${i === 2 ? 'Connection: close\r\n' : ''}\r\n`);
    const { text, closed } = await converse(pair.outbound, [reqs.join('')], (t) => count(t, /HTTP\/1\.1 200/g) === 3);
    const urls = [...text.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    expect(urls).toEqual(['/1', '/2', '/3']);
    expect(closed).toBe(true);
    expect(text.split('HTTP/1.1 200')[3]).toContain('connection: close');
  });

  it('forwards a small body that arrives in the same read as its head, on fresh and kept-alive connections', async () => {
    const agent = new http.Agent({ keepAlive: true });
    try {
      for (let i = 0; i < 3; i++) {
        const get = await request(pair.outbound, { host: 'app', path: '/x', agent });
        expect(get.status).toBe(200);
        const put = await request(pair.outbound, { host: 'app', method: 'PUT', path: '/k', body: String(i), agent });
        expect(JSON.parse(put.body)).toMatchObject({ method: 'PUT', body: String(i) });
      }
    } finally {
      agent.destroy();
    }
    const once = await request(pair.outbound, { host: 'app', method: 'POST', path: '/k', body: 'one' });
    expect(JSON.parse(once.body)).toMatchObject({ method: 'POST', body: 'one' });
  });

  it('answers 400 to a request with two Host headers, naming the rule', async () => {
    const text = await raw(pair.outbound, 'GET / HTTP/1.1\r\nHost: app\r\nHost: other\r\nConnection: close\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).toContain('x-skein-reason: bad_request');
    expect(text).toContain('more than one Host header');
  });

  it('parses requests split across many small reads (head and chunked body)', async () => {
    const msg = 'POST /echo HTTP/1.1\r\nHost: app\r\nX-Split: yes\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
    const parts: string[] = [];
    for (let i = 0; i < msg.length; i += 3) parts.push(msg.slice(i, i + 3));
    const { text, closed } = await converse(pair.outbound, parts, (t) => t.includes('}'), 2);
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    const echo = JSON.parse(text.slice(text.indexOf('{'))) as { body: string; headers: Record<string, string> };
    expect(echo.body).toBe('hello world');
    expect(echo.headers['x-split']).toBe('yes');
    expect(closed).toBe(false);
  });

  it('answers Expect: 100-continue itself and does not forward Expect', async () => {
    const s = net.connect(pair.outbound, '127.0.0.1');
    const got: Buffer[] = [];
    const text = (): string => Buffer.concat(got).toString();
    const waitFor = (re: RegExp): Promise<void> =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} in ${JSON.stringify(text())}`)), 3000);
        const check = (): void => {
          if (!re.test(text())) return;
          clearTimeout(t);
          s.off('data', check);
          resolve();
        };
        s.on('data', check);
      });
    s.on('data', (c: Buffer) => got.push(c));
    s.write('POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await waitFor(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
    s.write('12345');
    await waitFor(/\}$/);
    s.destroy();
    const echo = JSON.parse(text().slice(text().indexOf('{'))) as { body: string; headers: Record<string, string> };
    expect(echo.body).toBe('12345');
    expect(echo.headers['expect']).toBeUndefined();
  });

  it('refuses an expectation other than 100-continue with 417', async () => {
    const out = await raw(pair.outbound, 'GET / HTTP/1.1\r\nHost: app\r\nExpect: teapot\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 417/);
    expect(out).toContain('teapot');
  });

  it('does not apply the header timeout to a kept-alive connection idle between requests', async () => {
    const get = 'GET /again HTTP/1.1\r\nHost: app\r\n\r\n';
    const { text, closed } = await converse(pair.outbound, [get, get], (t) => count(t, /HTTP\/1\.1 200/g) === 2, 500);
    expect(count(text, /HTTP\/1\.1 200/g)).toBe(2);
    expect(text).not.toContain('408');
    expect(closed).toBe(false);
  });

  it('answers garbage after a good pipelined request: the first in full, then 400 naming llhttp\'s error', async () => {
    const { text, closed } = await converse(pair.outbound, ['GET /ok HTTP/1.1\r\nHost: app\r\n\r\nNOT-HTTP \x01\x02\r\n\r\n'], (t) => t.includes('HTTP/1.1 400'));
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text).toContain('x-skein-reason: bad_request');
    expect(text).toMatch(/bad request: HPE_[A-Z_]+ \(/);
    expect(closed).toBe(true);
  });

  it('counts many small headers against the limit: 431', async () => {
    let head = 'GET / HTTP/1.1\r\nHost: app\r\n';
    for (let i = 0; i < 1000; i++) head += `X-H${i}: v\r\n`; // about 7 KB of names and values
    const out = await raw(pair.outbound, `${head}\r\n`);
    expect(out).toMatch(/^HTTP\/1\.1 431/);
    expect(out).toContain('over 4 KB');
  });

  it('re-chunks a response of unknown length for HTTP/1.1 clients', async () => {
    const { text } = await converse(pair.outbound, ['GET /chunked HTTP/1.1\r\nHost: app\r\n\r\n'], (t) => t.endsWith('0\r\n\r\n'));
    expect(text.toLowerCase()).toContain('transfer-encoding: chunked');
    const r = await request(pair.outbound, { host: 'app', path: '/chunked' });
    expect(r.body).toBe('abbccc');
  });

  it('delimits a response of unknown length by closing for HTTP/1.0 clients', async () => {
    const { text, closed } = await converse(pair.outbound, ['GET /chunked HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n'], () => false);
    expect(closed).toBe(true);
    const [head, body] = text.split('\r\n\r\n');
    expect(head!.toLowerCase()).not.toContain('transfer-encoding');
    expect(head).toContain('connection: close');
    expect(body).toBe('abbccc');
  });

  it('keeps HTTP/1.0 keep-alive connections open when the length is known', async () => {
    const get = 'GET /ten HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n';
    const { text, closed } = await converse(pair.outbound, [get + get], (t) => count(t, /HTTP\/1\.1 200/g) === 2 && t.endsWith('}'));
    expect(count(text, /connection: keep-alive/g)).toBe(2);
    expect(closed).toBe(false);
  });

  it('sends no body for HEAD and goes on with the next request', async () => {
    const { text } = await converse(
      pair.outbound,
      ['HEAD /h HTTP/1.1\r\nHost: app\r\n\r\nHEAD /nowhere HTTP/1.1\r\nHost: ghost\r\n\r\nGET /g HTTP/1.1\r\nHost: app\r\n\r\n'],
      (t) => t.endsWith('}'),
    );
    const responses = text.split(/(?=HTTP\/1\.1 )/);
    expect(responses).toHaveLength(3);
    expect(responses[0]).toMatch(/\r\n\r\n$/);
    expect(responses[1]).toMatch(/^HTTP\/1\.1 404[^]*content-length: \d+[^]*\r\n\r\n$/);
    expect(responses[2]).toContain('"method":"GET","url":"/g"');
  });

  it('forwards an Upgrade request and relays an app answer other than 101 as plain HTTP, keeping the connection', async () => {
    const ws = 'GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n';
    const { text, closed } = await converse(pair.outbound, [ws, 'GET /next HTTP/1.1\r\nHost: app\r\n\r\n'], (t) => count(t, /HTTP\/1\.1 200/g) === 2, 50);
    expect(text).not.toContain(' 101 ');
    const first = JSON.parse(text.slice(text.indexOf('{'), text.indexOf('}HTTP') + 1)) as { headers: Record<string, string> };
    // The app (node:http without an upgrade handler) is asked, and answers as to any request.
    expect(first.headers['upgrade']).toBe('websocket');
    expect(first.headers['connection']).toBe('upgrade');
    expect(text).toContain('"url":"/next"');
    expect(closed).toBe(false);
  });

  it('opens a CONNECT tunnel to a Service and routes the plain HTTP/1.1 requests inside it; an unknown host is 404', async () => {
    const nowhere = await raw(pair.outbound, 'CONNECT nowhere:80 HTTP/1.1\r\nHost: nowhere:80\r\n\r\n');
    expect(nowhere).toMatch(/^HTTP\/1\.1 404/);
    expect(nowhere).toContain('no route for host "nowhere:80"');
    const { text } = await converse(
      pair.outbound,
      ['CONNECT app:80 HTTP/1.1\r\nHost: app:80\r\n\r\nGET /in-tunnel HTTP/1.1\r\nHost: app\r\n\r\n'],
      (t) => t.includes('"url":"/in-tunnel"'),
    );
    expect(text).toMatch(/^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200/);
  });

  it('serves Node\'s own fetch with HTTP_PROXY (it sends CONNECT even for http:// URLs)', async () => {
    const script = "fetch('http://app/via-fetch').then(async (r) => { console.log(r.status, await r.text()); }, (e) => { console.log('failed', e.cause?.message ?? e.message); })";
    const out = await new Promise<string>((resolve) => {
      const child = spawn(process.execPath, ['-e', script], {
        env: { PATH: process.env.PATH, NODE_USE_ENV_PROXY: '1', HTTP_PROXY: `http://127.0.0.1:${pair.outbound}`, NO_PROXY: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('close', () => resolve(text));
    });
    expect(out).toMatch(/^200 /);
    expect(out).toContain('"url":"/via-fetch"');
  });

  it('delivers a large response intact to a slow reader (backpressure both ways)', async () => {
    const body = await new Promise<number>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: pair.outbound, path: '/big', headers: { host: 'app' }, agent: false }, (res) => {
        let n = 0;
        let bad = false;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (c.some((b) => b !== 0x78)) bad = true;
          res.pause();
          setTimeout(() => res.resume(), 1);
        });
        res.on('end', () => (bad ? reject(new Error('corrupt body')) : resolve(n)));
      });
      req.on('error', reject);
    });
    expect(body).toBe(BIG);
  });

  it('abandons the upstream request when the client leaves mid-response, and serves on', async () => {
    const before = app.closedEarly();
    await converse(pair.outbound, ['GET /endless HTTP/1.1\r\nHost: app\r\n\r\n'], (t) => t.includes('more'));
    for (let i = 0; i < 100 && app.closedEarly() === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(app.closedEarly()).toBe(before + 1);
    const stat = pair.client.clusterStats().find((c) => c.name === APP)!;
    expect(stat.endpoints[0]!.active).toBe(0);
    expect((await request(pair.outbound, { host: 'app', path: '/after' })).status).toBe(200);
  });

  it('abandons a request whose client leaves mid-body', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(pair.outbound, '127.0.0.1', () => {
        s.write('POST /partial HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\nonly-some');
        setTimeout(() => s.destroy(), 50);
      });
      s.on('close', () => resolve());
    });
    // The sidecar sees the client leave in its own time (its side of the socket, then the upstream request's abort).
    await vi.waitFor(() => expect(pair.client.clusterStats().find((c) => c.name === APP)!.endpoints[0]!.active).toBe(0), { timeout: 10_000 });
    expect((await request(pair.outbound, { host: 'app', path: '/after-partial' })).status).toBe(200);
  });
});

describe('outbound HTTP/1.1 draining', () => {
  it('keeps serving the workload while it has connections open, then closes idle ones and says connection: close on responses in flight', async () => {
    const app = await startTestApp();
    const pair = await startPair([app.port]);
    pair.client.update(mesh([cluster(APP, [endpoint(app.port)])], [{ name: 'app', domains: ['app'], routes: [route(APP)] }]));
    const idle = net.connect(pair.outbound, '127.0.0.1');
    let idleClosedAt: number | undefined;
    const idleClosed = new Promise<void>((r) => idle.on('close', () => r()));
    idle.on('close', () => (idleClosedAt = Date.now()));
    idle.on('error', () => {});
    idle.write('GET /first HTTP/1.1\r\nHost: app\r\n\r\n');
    await new Promise<void>((r) => idle.once('data', () => r()));
    // A 3 s drain: the workload (no app ports here) keeps a connection, so the outbound side serves it for 2 s, a new
    // connection included, and closes gracefully in the last second.
    const t0 = Date.now();
    const closing = pair.client.close(3000);
    await new Promise((r) => setTimeout(r, 300));
    const during = await converse(pair.outbound, ['GET /during HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n'], (t) => t.includes('"url":"/during"'));
    expect(during.text).toMatch(/^HTTP\/1\.1 200/);
    expect(idleClosedAt).toBeUndefined();
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + 1900 - Date.now())));
    const busy = converse(pair.outbound, ['GET /delay HTTP/1.1\r\nHost: app\r\n\r\n'], (t) => t.endsWith('late'));
    await idleClosed;
    expect((idleClosedAt ?? 0) - t0).toBeGreaterThanOrEqual(1900);
    const { text, closed } = await busy;
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text).toContain('connection: close');
    expect(closed).toBe(true);
    await closing;
    await pair.server.close(100);
    await closeServer(app.server);
  });
});
