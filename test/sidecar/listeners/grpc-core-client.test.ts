// gRPC C-core (Python grpcio, another HTTP/2 and gRPC implementation) calling through the sidecar pair to a grpc-js app.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pythonWithGrpc } from '../../e2e/grpc-echo.ts';
import { ECHO_SERVICE, listenGrpc } from './grpc-helpers.ts';
import { cluster, domains, endpoint, freePort, mesh, route, startPair, type Pair } from './harness.ts';

const SCRIPT = fileURLToPath(new URL('./grpc-core-calls.py', import.meta.url));
const ECHO = 'outbound|50051||echo.default.svc.cluster.local';
const REFUSED = 'outbound|50051||refused.default.svc.cluster.local';

const python = pythonWithGrpc();
if (!python) console.warn('grpc-core-client.test.ts: skipped, no python3 that imports grpc (Debian package python3-grpcio; .ci/system-packages.sh installs it)');

describe.skipIf(!python)('gRPC C-core (Python grpcio) through the sidecar pair', () => {
  let pair: Pair;
  let server: grpc.Server;

  beforeAll(async () => {
    server = new grpc.Server({ 'grpc.max_receive_message_length': 16 << 20, 'grpc.max_send_message_length': 16 << 20 });
    server.addService(ECHO_SERVICE, {
      Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
      Find: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.NOT_FOUND, details: 'no such key: k1' }),
      Admin: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(0)),
      Watch: (call: grpc.ServerWritableStream<Buffer, Buffer>) => call.end(),
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', (m: Buffer) => call.write(m));
        call.on('end', () => call.end());
      },
    });
    const port = await listenGrpc(server);
    pair = await startPair([port]);
    pair.client.update(
      mesh(
        [cluster(ECHO, [endpoint(port, pair.inbound)], { protocol: 'http2' }), cluster(REFUSED, [endpoint(await freePort())], { protocol: 'http2' })],
        [
          { name: 'echo', domains: domains('echo', 'default', '10.96.0.20', 50051, false), routes: [route(ECHO)] },
          { name: 'refused', domains: domains('refused', 'default', '10.96.0.21', 50051, false), routes: [route(REFUSED)] },
        ],
      ),
    );
    pair.server.update(mesh([], []));
  });

  afterAll(async () => {
    server?.forceShutdown();
    await pair?.close();
  });

  it('carries unary, 3 MiB, concurrent and streaming calls, the app\'s statuses, and says why a call failed in the sidecar', { timeout: 60_000 }, async () => {
    // Asynchronous: the app and both sidecars run in this process.
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(python as string, [SCRIPT, String(pair.outbound), 'echo.default:50051', 'refused.default:50051'], { timeout: 50_000 }, (err, out, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(out),
      ),
    );
    const out = JSON.parse(stdout) as Record<string, unknown>;
    expect(out.unary).toBe('hello from c-core');
    expect(out.big_ok).toBe(true);
    expect(out.concurrent_ok).toBe(true);
    expect(out.chat).toEqual([1, 200_000, 1]);
    expect(out.find).toEqual(['NOT_FOUND', 'no such key: k1']);
    const [code, details, reason] = out.refused as [string, string, string | undefined];
    expect(code).toBe('UNAVAILABLE');
    expect(details).toMatch(/^upstream connect error: ECONNREFUSED /);
    expect(reason).toBe('upstream_connect_error');
  });
});
