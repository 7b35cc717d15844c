// Runs `skein demo --smoke` as a user would: the whole local mesh with mTLS, a replica stop and a denied call.
import { spawn } from 'node:child_process';
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
});
