// HTTP/2 upstreams that break a response off or limit concurrent streams, through the pair: L4 pipe and L7 relay inbound.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { closeServer, cluster, domains, endpoint, freePort, h2Frame, listen, mesh, route, startPair } from './harness.ts';
import type { Pair } from './harness.ts';
import { bytes, ECHO_SERVICE, unary } from './grpc-helpers.ts';
import type { ClusterConfig } from '../../../sidecar/xds/model.ts';

const BROKEN = 'outbound|8080||broken.default.svc.cluster.local';
const LIMITED = 'outbound|50051||limited.default.svc.cluster.local';
const HALF_DOWN = 'outbound|50051||halfdown.default.svc.cluster.local';
const TRAILERS = 'outbound|8080||trailers.default.svc.cluster.local';
const BAD_STATUS = 'outbound|8080||badstatus.default.svc.cluster.local';
const CONN_HEADER = 'outbound|8080||connheader.default.svc.cluster.local';
const ANYONE = { allow: [{ from: [], to: [] }], deny: [] };

/** An HTTP/2 app that answers with headers and 16 KiB, then drops the connection: the response is incomplete. */
function brokenApp(): http2.Http2Server {
  const server = http2.createServer();
  server.on('stream', (stream, h) => {
    stream.on('error', () => {});
    const grpcCall = String(h['content-type']).startsWith('application/grpc');
    stream.respond({ ':status': 200, 'content-type': grpcCall ? 'application/grpc' : 'application/octet-stream' });
    const message = Buffer.alloc(5 + 16384, 1);
    message.writeUInt8(0, 0);
    message.writeUInt32BE(16384, 1);
    stream.write(grpcCall ? message : Buffer.alloc(16384, 1), () => setTimeout(() => stream.session?.socket.destroy(), 20));
  });
  return server;
}

/** An HTTP/2 app written frame by frame (node's own server refuses such heads): every stream gets `head`, then "body". */
function rawHeadApp(head: Array<[string, string]>): net.Server {
  const frame = h2Frame;
  // HPACK literal fields without indexing (names and values under 127 bytes, no Huffman).
  const block = Buffer.concat(head.flatMap(([n, v]) => [Buffer.from([0, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v)]));
  return net.createServer((socket) => {
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let preface = false;
    socket.write(frame(4, 0, 0, Buffer.alloc(0)));
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        preface = true;
      }
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        const type = buf[3];
        const flags = buf[4] as number;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type === 4 && (flags & 1) === 0) socket.write(frame(4, 1, 0, Buffer.alloc(0)));
        if (type !== 1) continue;
        socket.write(frame(1, 4, id, block));
        socket.write(frame(0, 1, id, Buffer.from('body')));
      }
    });
  });
}

/** An HTTP/2 app that answers with the request body's length and the request trailers it received, as JSON. */
function trailersApp(): http2.Http2Server {
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    let n = 0;
    let trailers: Record<string, unknown> = {};
    stream.on('trailers', (t) => (trailers = { ...t }));
    stream.on('data', (c: Buffer) => (n += c.length));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ bytes: n, trailers }));
    });
  });
  return server;
}

/** Posts `body` over h2c and ends it with `trailers`; resolves the app's JSON answer. */
function postWithTrailers(port: number, authority: string, body: Buffer, trailers: http2.OutgoingHttpHeaders): Promise<{ bytes: number; trailers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const st = session.request({ ':method': 'POST', ':path': '/upload', ':authority': authority }, { waitForTrailers: true });
    st.once('wantTrailers', () => st.sendTrailers(trailers));
    let text = '';
    st.on('data', (c: Buffer) => (text += String(c)));
    st.on('end', () => {
      session.close();
      try {
        resolve(JSON.parse(text) as { bytes: number; trailers: Record<string, unknown> });
      } catch {
        reject(new Error(`not JSON: ${text}`));
      }
    });
    st.on('error', reject);
    st.end(body);
  });
}

/** One h2c GET: the status, x-skein-reason, body and whether an http2-settings header came back. */
function fetchStatus(port: number, authority: string): Promise<{ status: number; reason: unknown; body: string; settingsHeader: unknown }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const st = session.request({ ':path': '/', ':authority': authority });
    let head: http2.IncomingHttpHeaders = {};
    let body = '';
    st.on('response', (h) => (head = h));
    st.on('data', (c: Buffer) => (body += String(c)));
    st.on('end', () => {
      session.close();
      resolve({ status: Number(head[':status']), reason: head['x-skein-reason'], body, settingsHeader: head['http2-settings'] });
    });
    st.on('error', reject);
    st.end();
  });
}

/** Fetches over h2c; resolves how the stream ended: 'complete' (END_STREAM) or 'reset'. */
function fetchH2(port: number, authority: string): Promise<{ status: number; bytes: number; ended: 'complete' | 'reset' }> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const st = session.request({ ':path': '/big', ':authority': authority });
    let status = 0;
    let n = 0;
    let ended = false;
    st.on('response', (h) => (status = Number(h[':status'])));
    st.on('data', (c: Buffer) => (n += c.length));
    st.on('end', () => (ended = st.rstCode === undefined || st.rstCode === 0));
    st.on('error', () => {});
    st.on('close', () => {
      resolve({ status, bytes: n, ended: ended && st.rstCode === 0 ? 'complete' : 'reset' });
      session.close();
    });
  });
}

describe.each([
  ['L4 pipe inbound', {}],
  ['L7 relay inbound (a policy on the Service)', { authz: ANYONE }],
] as Array<[string, Partial<ClusterConfig>]>)('HTTP/2 upstreams through the pair, %s', (_name, security) => {
  let pair: Pair;
  let broken: http2.Http2Server;
  let limited: grpc.Server;
  let brokenPort: number;
  let limitedPort: number;
  let trailersServer: http2.Http2Server;
  let badStatus: net.Server;
  let connHeader: net.Server;

  beforeAll(async () => {
    broken = brokenApp();
    brokenPort = await listen(broken);
    limited = new grpc.Server({ 'grpc.max_concurrent_streams': 4 });
    limited.addService(ECHO_SERVICE, {
      Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => setTimeout(() => cb(null, call.request), 100),
    });
    limitedPort = await new Promise<number>((resolve, reject) =>
      limited.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    trailersServer = trailersApp();
    const trailersPort = await listen(trailersServer);
    badStatus = rawHeadApp([[':status', '600'], ['content-type', 'text/plain']]);
    connHeader = rawHeadApp([[':status', '200'], ['http2-settings', 'AAMAAABk'], ['content-type', 'text/plain']]);
    const badStatusPort = await listen(badStatus);
    const connHeaderPort = await listen(connHeader);
    const refused = await freePort();
    pair = await startPair([brokenPort, limitedPort, trailersPort, badStatusPort, connHeaderPort]);
    const m = mesh(
      [
        cluster(BROKEN, [endpoint(brokenPort, pair.inbound)], { protocol: 'http2', ...security }),
        cluster(LIMITED, [endpoint(limitedPort, pair.inbound)], { protocol: 'http2', ...security }),
        cluster(HALF_DOWN, [endpoint(refused), endpoint(limitedPort, pair.inbound)], { protocol: 'http2', lbPolicy: 'round-robin', ...security }),
        cluster(TRAILERS, [endpoint(trailersPort, pair.inbound)], { protocol: 'http2', ...security }),
        cluster(BAD_STATUS, [endpoint(badStatusPort, pair.inbound)], { protocol: 'http2', ...security }),
        cluster(CONN_HEADER, [endpoint(connHeaderPort, pair.inbound)], { protocol: 'http2', ...security }),
      ],
      [
        { name: 'broken', domains: domains('broken', 'default', '10.96.0.30', 8080, false), routes: [route(BROKEN)] },
        { name: 'limited', domains: domains('limited', 'default', '10.96.0.31', 50051, false), routes: [route(LIMITED)] },
        { name: 'halfdown', domains: domains('halfdown', 'default', '10.96.0.32', 50051, false), routes: [route(HALF_DOWN)] },
        { name: 'trailers', domains: domains('trailers', 'default', '10.96.0.33', 8080, false), routes: [route(TRAILERS)] },
        { name: 'badstatus', domains: domains('badstatus', 'default', '10.96.0.34', 8080, false), routes: [route(BAD_STATUS)] },
        { name: 'connheader', domains: domains('connheader', 'default', '10.96.0.35', 8080, false), routes: [route(CONN_HEADER)] },
      ],
    );
    pair.client.update(m);
    pair.server.update(m);
  });

  afterAll(async () => {
    limited.forceShutdown();
    await pair.close();
    await closeServer(broken);
    await closeServer(trailersServer);
    await closeServer(badStatus);
    await closeServer(connHeader);
  });

  it("answers 502 to an app head HTTP/2 cannot carry (:status 600), drops a connection-specific field, and lives on", async () => {
    const bad = await fetchStatus(pair.outbound, 'badstatus.default:8080');
    expect(bad.status).toBe(502);
    expect(bad.reason).toBe('upstream_protocol_error');
    const conn = await fetchStatus(pair.outbound, 'connheader.default:8080');
    expect([conn.status, conn.body]).toEqual([200, 'body']);
    expect(conn.settingsHeader).toBeUndefined();
    // Both sidecars still serve.
    const again = await fetchStatus(pair.outbound, 'connheader.default:8080');
    expect(again.status).toBe(200);
  });

  it("an h2c caller's request trailers reach the app after the body; a request without them still ends", async () => {
    const body = Buffer.alloc(40_000, 7);
    const r = await postWithTrailers(pair.outbound, 'trailers.default:8080', body, { 'x-checksum': 'abc123', 'x-count': '2' });
    expect(r.bytes).toBe(40_000);
    expect(r.trailers).toMatchObject({ 'x-checksum': 'abc123', 'x-count': '2' });
    const none = await postWithTrailers(pair.outbound, 'trailers.default:8080', Buffer.from('x'), {});
    expect(none.bytes).toBe(1);
    expect(Object.keys(none.trailers)).toEqual([]);
  });

  it('an app that drops its connection midway: the h2c client sees a reset, never a complete response', async () => {
    const r = await fetchH2(pair.outbound, 'broken.default:8080');
    expect(r.status).toBe(200);
    expect(r.ended).toBe('reset');
  });

  it('a gRPC stream the app breaks off ends UNAVAILABLE with the reason, as a dropped connection reads directly', async () => {
    const c = new grpc.Client(`127.0.0.1:${pair.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'broken.default:8080' });
    try {
      const call = c.makeServerStreamRequest('/demo.Echo/Watch', bytes, bytes, Buffer.from('w'));
      let messages = 0;
      call.on('data', () => messages++);
      call.on('error', () => {});
      const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      expect(messages).toBe(1);
      expect(status.code).toBe(grpc.status.UNAVAILABLE);
      expect(status.details).toContain('upstream reset');
    } finally {
      c.close();
    }
  });

  it('a burst on a new connection to an app that limits concurrent streams: every call succeeds', async () => {
    const c = new grpc.Client(`127.0.0.1:${pair.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'limited.default:50051' });
    try {
      const results = await Promise.all(Array.from({ length: 24 }, (_, i) => unary(c, '/demo.Echo/Say', `n${i}`)));
      expect(results.filter((r) => r.error !== undefined).map((r) => r.error?.details)).toEqual([]);
      expect(results.map((r) => r.reply)).toEqual(Array.from({ length: 24 }, (_, i) => `n${i}`));
    } finally {
      c.close();
    }
  });

  it('a gRPC call whose connection cannot be made goes to another endpoint (its body is read only once connected)', async () => {
    const c = new grpc.Client(`127.0.0.1:${pair.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'halfdown.default:50051' });
    try {
      const results = [];
      for (let i = 0; i < 6; i++) results.push(await unary(c, '/demo.Echo/Say', `r${i}`));
      expect(results.filter((r) => r.error !== undefined).map((r) => r.error?.details)).toEqual([]);
      const retries = (await pair.clientRegistry.getSingleMetric('skein_upstream_connect_retries_total')?.get())?.values[0]?.value ?? 0;
      expect(retries).toBeGreaterThan(0);
    } finally {
      c.close();
    }
  });
});
