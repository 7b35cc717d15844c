// Runs `skein demo --smoke` as a user would: the whole local mesh with mTLS, a replica stop and a denied call.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const SKEIN = fileURLToPath(new URL('../../cli/skein.ts', import.meta.url));
let stateDir = '';

afterAll(async () => {
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

describe('skein demo --smoke', () => {
  it('runs the demo mesh, checks every hop and exits 0', async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'skein-demo-'));
    const child = spawn(process.execPath, [SKEIN, 'demo', '--smoke', '--state-dir', stateDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(out, out).toContain('skein demo --smoke: OK');
    expect(code).toBe(0);
    expect(out).toMatch(/hostname-3 stopped/);
    expect(out).toMatch(/403 rbac_denied/);
  }, 240_000);

  it('refuses to start, naming the address, when a pod address is already taken', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(8080, '127.0.0.12', resolve));
    try {
      const child = spawn(process.execPath, [SKEIN, 'demo', '--smoke', '--state-dir', join(stateDir || tmpdir(), 'busy')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(out).toContain('127.0.0.12:8080 is already in use');
      expect(code).toBe(1);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  }, 60_000);
});
