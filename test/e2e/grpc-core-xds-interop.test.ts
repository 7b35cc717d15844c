// Proxyless gRPC interop with gRPC C-core's xDS client (Python grpcio): a second xDS client, written by others, resolves and balances through `skein control-plane`.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneProcess, controlPlaneAvailable } from '../bench/lib/control-plane-process.ts';
import { ECHO_PROTO, type EchoServer, pythonWithGrpc, SERVICE_PORT, startEchoServer, writeRegistry } from './grpc-echo.ts';

const CLIENT = fileURLToPath(new URL('./grpc-core-client.py', import.meta.url));

interface Calls {
  readonly names: string[];
  readonly errors: string[];
}

const python = controlPlaneAvailable() ? pythonWithGrpc() : undefined;
const title = python
  ? 'proxyless gRPC (gRPC C-core through Python grpcio) against skein control-plane'
  : 'proxyless gRPC C-core interop — SKIPPED: no python3 that imports grpc (Debian package python3-grpcio; .ci/system-packages.sh installs it as root)';

describe.skipIf(!python)(title, () => {
  let dir = '';
  let registryPath = '';
  let bootstrapPath = '';
  let servers: EchoServer[] = [];
  let cp: ControlPlaneProcess | undefined;

  /** One run of the C-core client: a new channel (a new xDS client) making `count` calls to `service`. */
  function calls(service: string, count: number): Promise<Calls> {
    const target = `xds:///${service}.default.svc.cluster.local:${SERVICE_PORT}`;
    return new Promise((resolve, reject) => {
      execFile(
        python as string,
        [CLIENT, target, String(count), '5'],
        { env: { ...process.env, GRPC_XDS_BOOTSTRAP: bootstrapPath }, timeout: 30_000 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`C-core client failed (${err.message}): ${stderr.slice(-2000)}`));
          else resolve(JSON.parse(stdout) as Calls);
        },
      );
    });
  }

  /** Runs the client until `done` holds for a run's answers (the control plane applies a file edit within ~1 s). */
  async function callsUntil(service: string, count: number, done: (r: Calls) => boolean): Promise<Calls> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await calls(service, count);
      if (done(r) || Date.now() > deadline) return r;
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'skein-core-xds-'));
    const protoPath = join(dir, 'echo.proto');
    writeFileSync(protoPath, ECHO_PROTO);
    servers = await Promise.all(['a', 'b', 'c'].map((n) => startEchoServer(protoPath, n)));
    registryPath = join(dir, 'registry.yaml');
    writeRegistry(registryPath, [{ name: 'echo', servers: servers.slice(0, 2) }]);
    cp = await ControlPlaneProcess.start({ registry: registryPath, debounceMs: 20, readyTimeoutMs: 15_000 });
    bootstrapPath = join(dir, 'bootstrap.json');
    writeFileSync(
      bootstrapPath,
      JSON.stringify({
        xds_servers: [{ server_uri: cp.xdsAddress, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
        node: { id: 'core-client~default', locality: {}, metadata: { NAMESPACE: 'default' } },
      }),
    );
  });

  afterAll(async () => {
    await cp?.stop();
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.server.tryShutdown(() => r()))));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reaches both endpoints, then only the one left after the registry drops the other, and NACKs nothing', async () => {
    const first = await calls('echo', 20);
    expect(first.errors, `control plane: ${cp?.logTail()}`).toEqual([]);
    expect(new Set(first.names)).toEqual(new Set(['a', 'b']));

    writeRegistry(registryPath, [{ name: 'echo', servers: servers.slice(0, 1) }]);
    const after = await callsUntil('echo', 20, (r) => r.names.every((n) => n === 'a'));
    expect(after.errors).toEqual([]);
    expect(after.names).toEqual(Array(20).fill('a'));

    const metrics = await (await fetch(`${cp?.adminUrl}/metrics`)).text();
    const nacks = metrics.split('\n').filter((l) => l.startsWith('skein_xds_nacks_total') && !l.endsWith(' 0'));
    expect(nacks, 'C-core rejected a response').toEqual([]);
  });

  it('follows a weighted split across two Services (skein.dev/routes)', async () => {
    writeRegistry(registryPath, [
      {
        name: 'echo',
        servers: servers.slice(0, 1),
        annotations: {
          'skein.dev/routes': `- prefix: /skein.e2e.Echo/\n  weighted:\n    - { service: echo, port: ${SERVICE_PORT}, weight: 50 }\n    - { service: echo2, port: ${SERVICE_PORT}, weight: 50 }\n`,
        },
      },
      { name: 'echo2', servers: servers.slice(2) },
    ]);
    // 40 calls split 50/50: both sides answer unless the split is not applied (one side empty: 2 in 2^40).
    const r = await callsUntil('echo', 40, (x) => x.names.includes('a') && x.names.includes('c'));
    expect(r.errors, `control plane: ${cp?.logTail()}`).toEqual([]);
    expect(new Set(r.names)).toEqual(new Set(['a', 'c']));
    const direct = await calls('echo2', 5);
    expect(direct).toEqual({ names: Array(5).fill('c'), errors: [] });
  });
});
