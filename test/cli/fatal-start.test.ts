// A control plane whose start-up fails halfway exits 1 with a message naming the flag to change, instead of hanging.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SKEIN = fileURLToPath(new URL('../../cli/skein.ts', import.meta.url));
const REGISTRY = fileURLToPath(new URL('../../examples/registry.yaml', import.meta.url));

function run(args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SKEIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SKEIN_LEAN_EXEC: '0' } });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

describe('skein control-plane with a port in use', () => {
  it('exits 1 naming --admin-address, though its xDS server had already started', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const { code, stderr } = await run(['control-plane', '--registry', REGISTRY, '--xds-address', '127.0.0.1:0', '--xds-tls-address', 'none', '--admin-address', `127.0.0.1:${port}`]);
      expect(code).toBe(1);
      expect(stderr).toContain(`pick another with --admin-address`);
    } finally {
      busy.close();
    }
  });
});

describe('skein control-plane with its xDS port in use', () => {
  it('exits 1 with its own message, without grpc-js printing its own line first', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const { code, stderr } = await run(['control-plane', '--registry', REGISTRY, '--xds-address', `127.0.0.1:${port}`, '--xds-tls-address', 'none', '--admin-address', '127.0.0.1:0']);
      expect(code).toBe(1);
      expect(stderr).toContain('SKEIN_XDS_BIND');
      // Every line is ours: a JSON log line or the final `skein: [CODE] ...` (grpc-js's own start with "E <date> | ").
      const lines = stderr.trim().split('\n');
      expect(lines.filter((l) => !l.startsWith('{') && !l.startsWith('skein: '))).toEqual([]);
    } finally {
      busy.close();
    }
  });
});

describe('skein --version', () => {
  it('prints the package version and the Node.js version', async () => {
    const { code, stdout } = await run(['--version']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^skein \d+\.\d+\.\d+ \(node 24\./);
  });
});
