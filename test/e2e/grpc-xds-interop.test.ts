// Proxyless gRPC interop: a grpc-js-xds client balances over endpoints that `skein control-plane` serves from a file.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneProcess, controlPlaneAvailable } from '../bench/lib/control-plane-process.ts';
import { ECHO_PROTO, type EchoServer, SERVICE_PORT, startEchoServer, writeRegistry } from './grpc-echo.ts';
import type { ClientReply, ClientRequest } from './grpc-xds-interop-client.ts';

const CLIENT = fileURLToPath(new URL('./grpc-xds-interop-client.ts', import.meta.url));
const TARGET = `xds:///echo.default.svc.cluster.local:${SERVICE_PORT}`;

class XdsClient {
  private readonly child: ChildProcess;
  private readonly replies: ClientReply[] = [];
  private wake: (() => void) | undefined;
  stderr = '';

  constructor(protoPath: string, bootstrap: object) {
    this.child = spawn(process.execPath, [CLIENT, protoPath, TARGET], {
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap) },
    });
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (c: string) => {
      this.stderr = (this.stderr + c).slice(-4000);
    });
    this.child.on('message', (m: ClientReply) => {
      this.replies.push(m);
      this.wake?.();
    });
    this.child.on('exit', () => this.wake?.());
  }

  private async next(): Promise<ClientReply> {
    for (;;) {
      const r = this.replies.shift();
      if (r) return r;
      if (this.child.exitCode !== null) throw new Error(`xDS client exited (${this.child.exitCode}): ${this.stderr}`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  async ready(): Promise<void> {
    const r = await this.next();
    if (r.type !== 'ready') throw new Error(`unexpected ${r.type}`);
  }

  async call(count: number, deadlineMs = 1000): Promise<{ names: string[]; errors: string[] }> {
    this.child.send({ type: 'call', count, deadlineMs } satisfies ClientRequest);
    const r = await this.next();
    if (r.type !== 'result') throw new Error(`unexpected ${r.type}`);
    return r;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

/** Calls in batches until `done` says so or the time is up; returns every name seen and the last errors. */
async function callUntil(
  client: XdsClient,
  timeoutMs: number,
  done: (names: string[]) => boolean,
): Promise<{ names: string[]; errors: string[] }> {
  const deadline = Date.now() + timeoutMs;
  const names: string[] = [];
  let errors: string[] = [];
  while (Date.now() < deadline) {
    const r = await client.call(10);
    names.push(...r.names);
    errors = r.errors.length ? r.errors : errors;
    if (done(names)) break;
    if (r.names.length === 0) await new Promise((res) => setTimeout(res, 200));
  }
  return { names, errors };
}

const available = controlPlaneAvailable();
const title = available
  ? 'proxyless gRPC (grpc-js-xds) against skein control-plane'
  : 'proxyless gRPC interop — SKIPPED: control-plane/main.ts (the `skein control-plane` entry point) does not exist yet';

describe.skipIf(!available)(title, () => {
  let dir = '';
  let registryPath = '';
  let servers: EchoServer[] = [];
  let cp: ControlPlaneProcess | undefined;
  let client: XdsClient | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'skein-xds-interop-'));
    const protoPath = join(dir, 'echo.proto');
    writeFileSync(protoPath, ECHO_PROTO);
    servers = [await startEchoServer(protoPath, 'a'), await startEchoServer(protoPath, 'b'), await startEchoServer(protoPath, 'c')];
    registryPath = join(dir, 'registry.yaml');
    writeRegistry(registryPath, [{ name: 'echo', servers: servers.slice(0, 2) }]);
    cp = await ControlPlaneProcess.start({ registry: registryPath, debounceMs: 20, readyTimeoutMs: 15_000 });
    client = new XdsClient(protoPath, {
      xds_servers: [{ server_uri: cp.xdsAddress, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'echo-client~default', locality: {}, metadata: { NAMESPACE: 'default' } },
    });
    await client.ready();
  });

  afterAll(async () => {
    await client?.stop();
    await cp?.stop();
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.server.tryShutdown(() => r()))));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reaches both endpoints, then only the one left after the registry drops the other', async () => {
    const c = client as XdsClient;
    const first = await callUntil(c, 8000, (names) => names.includes('a') && names.includes('b'));
    expect(first.names).not.toContain('c');
    const context = () => `errors: ${first.errors.slice(0, 3).join('; ')}\nclient: ${c.stderr}\ncontrol plane: ${cp?.logTail()}`;
    expect(new Set(first.names), context()).toEqual(new Set(['a', 'b']));

    writeRegistry(registryPath, [{ name: 'echo', servers: servers.filter((s) => s.name === 'a') }]);
    // Converged once 20 calls in a row answer from "a" only.
    const after = await callUntil(c, 8000, (names) => names.length >= 20 && names.slice(-20).every((n) => n === 'a'));
    expect(after.names.slice(-20)).toEqual(Array(20).fill('a'));

    const settled = await c.call(20);
    expect(settled.errors).toEqual([]);
    expect(new Set(settled.names)).toEqual(new Set(['a']));
  });

  it('shares calls per endpoint, not per zone: a zone with one replica gets a third when the other zone has two', async () => {
    const c = client as XdsClient;
    writeRegistry(registryPath, [
      { name: 'echo', servers, placement: { a: { zone: 'zone-a' }, b: { zone: 'zone-b' }, c: { zone: 'zone-b' } } },
    ]);
    await callUntil(c, 8000, (names) => names.length >= 30 && ['a', 'b', 'c'].every((n) => names.slice(-30).includes(n)));
    const counts: Record<string, number> = {};
    let errors: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await c.call(30);
      for (const n of r.names) counts[n] = (counts[n] ?? 0) + 1;
      errors = [...errors, ...r.errors];
    }
    expect(errors).toEqual([]);
    // 600 calls: a third each is 200; with equal zone weights zone-a's lone replica would take about 300.
    expect(counts.a ?? 0, JSON.stringify(counts)).toBeGreaterThan(140);
    expect(counts.a ?? 0, JSON.stringify(counts)).toBeLessThan(260);
    expect((counts.b ?? 0) + (counts.c ?? 0), JSON.stringify(counts)).toBe(600 - (counts.a ?? 0));
  });

  it('keeps a channel on one endpoint for a Service with sessionAffinity: ClientIP (ring hash on the channel id)', async () => {
    const c = client as XdsClient;
    writeRegistry(registryPath, [{ name: 'echo', servers, sessionAffinity: 'ClientIP' }]);
    // Round robin answers from a, b and c in turn; 30 calls in a row from one endpoint mean the ring hash took over.
    const after = await callUntil(c, 10_000, (names) => names.length >= 30 && new Set(names.slice(-30)).size === 1);
    expect(new Set(after.names.slice(-30)).size, `errors: ${after.errors.slice(0, 3).join('; ')}\ncontrol plane: ${cp?.logTail()}`).toBe(1);
    const settled = await c.call(30);
    expect(settled.errors).toEqual([]);
    expect(new Set(settled.names)).toEqual(new Set(after.names.slice(-1)));
  });

  it('keeps answering when every endpoint is terminating but still serving (kube-proxy’s fallback)', async () => {
    const c = client as XdsClient;
    writeRegistry(registryPath, [{ name: 'echo', servers: servers.slice(0, 1), placement: { a: { terminating: true } } }]);
    const after = await callUntil(c, 8000, (names) => names.length >= 20 && names.slice(-20).every((n) => n === 'a'));
    expect(after.names.slice(-20), `errors: ${after.errors.slice(0, 3).join('; ')}`).toEqual(Array(20).fill('a'));
    const settled = await c.call(20);
    expect(settled.errors).toEqual([]);
    expect(settled.names).toEqual(Array(20).fill('a'));
  });
});
