// Runs `skein demo --smoke` as a user would: the whole local mesh with mTLS, a replica stop and a denied call.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
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

  it('stops every process of the mesh on SIGTERM (a kill, a container stop), not only on Ctrl-C', async () => {
    const dir = join(stateDir || tmpdir(), 'term');
    const child = spawn(process.execPath, [SKEIN, 'demo', '--state-dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const summary = new Promise<void>((resolve) => {
      const onData = (d: Buffer) => {
        out += d.toString();
        if (/requests.*per replica/.test(out)) resolve();
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await Promise.race([summary, exited]);
    child.kill('SIGTERM');
    expect(await exited, out).toBe(143);
    // Nothing that the demo started is left: no process names its state directory, and a pod address is free.
    const left: string[] = [];
    for (const pid of await readdir('/proc').catch(() => [])) {
      if (!/^\d+$/.test(pid)) continue;
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmd.includes(dir)) left.push(cmd.replaceAll('\0', ' '));
    }
    expect(left).toEqual([]);
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(8080, '127.0.0.12', resolve);
    });
    await new Promise((resolve) => probe.close(resolve));
  }, 120_000);
});
