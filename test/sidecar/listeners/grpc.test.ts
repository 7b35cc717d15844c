// gRPC through a sidecar pair with real @grpc/grpc-js clients and servers: app statuses, metadata timing, local replies.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { cluster, domains, endpoint, freePort, mesh, route, startPair } from './harness.ts';
import type { Pair } from './harness.ts';
import { bytes, chat, ECHO_SERVICE, listenGrpc, unary } from './grpc-helpers.ts';

const ECHO = 'outbound|50051||echo.default.svc.cluster.local';
const REFUSED = 'outbound|50051||refused.default.svc.cluster.local';

describe('gRPC through the pair (grpc-js on both ends)', () => {
  let pair: Pair;
  let server: grpc.Server;
  let release: () => void = () => {};

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(ECHO_SERVICE, {
      Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(`echo ${String(call.request)}`)),
      // An error with no message sent is a trailers-only response: one HEADERS frame with grpc-status, ending the stream.
      Find: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.NOT_FOUND, details: 'no such key: k1' }),
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', (m: Buffer) => call.write(Buffer.from(`re: ${String(m)}`)));
        call.on('end', () => call.end());
      },
      Watch: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const md = new grpc.Metadata();
        md.set('x-watch', 'started');
        call.sendMetadata(md);
        // The first message waits until the client has seen the metadata: a sidecar holding headers back would hang.
        release = () => {
          call.write(Buffer.from('one'));
          call.end();
        };
      },
    });
    const port = await listenGrpc(server);
    const refused = await freePort();
    pair = await startPair([port]);
    pair.client.update(
      mesh(
        [cluster(ECHO, [endpoint(port, pair.inbound)], { protocol: 'http2' }), cluster(REFUSED, [endpoint(refused)], { protocol: 'http2' })],
        [
          { name: 'echo', domains: domains('echo', 'default', '10.96.0.20', 50051, false), routes: [route(ECHO)] },
          { name: 'refused', domains: domains('refused', 'default', '10.96.0.21', 50051, false), routes: [route(REFUSED)] },
        ],
      ),
    );
    pair.server.update(mesh([], []));
  });

  afterAll(async () => {
    server.forceShutdown();
    await pair.close();
  });

  const client = (authority: string) =>
    new grpc.Client(`127.0.0.1:${pair.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority });

  it('carries a unary call, and the app’s error statuses (trailers-only responses) with their messages', async () => {
    const c = client('echo.default:50051');
    try {
      expect(await unary(c, '/demo.Echo/Say', 'hi')).toEqual({ reply: 'echo hi' });
      const found = await unary(c, '/demo.Echo/Find', 'k1');
      expect(found.error?.code).toBe(grpc.status.NOT_FOUND);
      expect(found.error?.details).toBe('no such key: k1');
      const missing = await unary(c, '/demo.Echo/Nope', '');
      expect(missing.error?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(missing.error?.details).toContain('/demo.Echo/Nope');
    } finally {
      c.close();
    }
  });

  it('passes response metadata on before the first message', async () => {
    const c = client('echo.default:50051');
    try {
      const call = c.makeServerStreamRequest('/demo.Echo/Watch', bytes, bytes, Buffer.from('w'));
      const got: string[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('metadata', (md: grpc.Metadata) => {
          got.push(`metadata ${String(md.get('x-watch')[0])}`);
          release();
        });
        call.on('data', (m: Buffer) => got.push(`data ${String(m)}`));
        call.on('error', reject);
        call.on('status', (s: grpc.StatusObject) => (s.code === grpc.status.OK ? resolve() : reject(new Error(s.details))));
      });
      await done;
      expect(got).toEqual(['metadata started', 'data one']);
    } finally {
      c.close();
    }
  });

  it('carries a bidirectional stream message by message (each reply before the next request)', async () => {
    const c = client('echo.default:50051');
    try {
      expect(await chat(c, ['one', 'two', 'three'])).toEqual({ replies: ['re: one', 're: two', 're: three'], code: grpc.status.OK });
    } finally {
      c.close();
    }
  });

  it('answers its own errors as gRPC statuses a client can read: code, message, and x-skein-reason', async () => {
    const c = client('nope.default:50051');
    const r = client('refused.default:50051');
    try {
      const noRoute = await unary(c, '/demo.Echo/Say', '');
      expect(noRoute.error?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(noRoute.error?.details).toContain('no route for host "nope.default:50051"');
      expect(noRoute.error?.metadata.get('x-skein-reason')).toEqual(['no_route']);
      const refused = await unary(r, '/demo.Echo/Say', '');
      expect(refused.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(refused.error?.details).toContain('ECONNREFUSED');
      expect(refused.error?.metadata.get('x-skein-reason')).toEqual(['upstream_connect_error']);
    } finally {
      c.close();
      r.close();
    }
  });
});
