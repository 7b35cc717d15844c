// The in-place restart of `skein sidecar`: what it execs, and that the restarted process runs and fills the compile cache.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { compileCacheDir, CONTROL_PLANE_PROFILE, findJemalloc, JEMALLOC_CONF, jemallocPaths, LEAN_NODE_FLAGS, leanExecPlan, runsOnGlibc, SIDECAR_PROFILE } from '../../cli/lean-exec.ts';

const SKEIN = fileURLToPath(new URL('../../cli/skein.ts', import.meta.url));

describe('leanExecPlan', () => {
  it('puts the lean flags before the caller’s own node flags and keeps every argument', () => {
    const plan = leanExecPlan(['/bin/node', '/repo/cli/skein.ts', 'sidecar', '--pod', 'a'], ['--cpu-prof'], { PATH: '/bin' });
    expect(plan).toBeDefined();
    expect(plan?.file).toBe(process.execPath);
    expect(plan?.args).toEqual([process.execPath, ...LEAN_NODE_FLAGS, '--cpu-prof', '/repo/cli/skein.ts', 'sidecar', '--pod', 'a']);
    expect(plan?.env.PATH).toBe('/bin');
    expect(plan?.env.SKEIN_LEAN_EXEC).toBe('1');
    expect(plan?.env.NODE_COMPILE_CACHE).toBe(compileCacheDir({}));
  });

  it('restarts the control plane with its glibc setting and no V8 flags, unless the operator set it', () => {
    const plan = leanExecPlan(['/bin/node', '/repo/cli/skein.ts', 'control-plane'], [], { PATH: '/bin' }, CONTROL_PLANE_PROFILE);
    expect(plan?.args).toEqual([process.execPath, '/repo/cli/skein.ts', 'control-plane']);
    expect(plan?.env.MALLOC_TRIM_THRESHOLD_).toBe('131072');
    const own = leanExecPlan(['/bin/node', 's.ts', 'control-plane'], [], { MALLOC_TRIM_THRESHOLD_: '0' }, CONTROL_PLANE_PROFILE);
    expect(own?.env.MALLOC_TRIM_THRESHOLD_).toBe('0');
    expect(leanExecPlan(['/bin/node', 's.ts', 'sidecar'], [], {})?.env.MALLOC_TRIM_THRESHOLD_).toBeUndefined();
  });

  it('preloads an installed jemalloc for the sidecar only, unless the operator preloads something or says system', () => {
    const argv = ['/bin/node', 's.ts', 'sidecar'];
    const lib = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';
    const plan = leanExecPlan(argv, [], {}, SIDECAR_PROFILE, () => lib);
    expect(plan?.env.LD_PRELOAD).toBe(lib);
    expect(plan?.env.MALLOC_CONF).toBe(JEMALLOC_CONF);
    expect(leanExecPlan(argv, [], { MALLOC_CONF: 'narenas:2' }, SIDECAR_PROFILE, () => lib)?.env.MALLOC_CONF).toBe('narenas:2');
    expect(leanExecPlan(argv, [], { LD_PRELOAD: '/opt/x.so' }, SIDECAR_PROFILE, () => lib)?.env.LD_PRELOAD).toBe('/opt/x.so');
    expect(leanExecPlan(argv, [], { SKEIN_MALLOC: 'system' }, SIDECAR_PROFILE, () => lib)?.env.LD_PRELOAD).toBeUndefined();
    const none = leanExecPlan(argv, [], {}, SIDECAR_PROFILE, () => undefined);
    expect(none?.env.LD_PRELOAD).toBeUndefined();
    expect(none?.env.MALLOC_CONF).toBeUndefined();
    expect(leanExecPlan(['/bin/node', 's.ts', 'control-plane'], [], {}, CONTROL_PLANE_PROFILE, () => lib)?.env.LD_PRELOAD).toBeUndefined();
  });

  it('looks for jemalloc only at fixed system paths for this architecture, in order, and only on glibc', () => {
    const paths = jemallocPaths();
    const seen: string[] = [];
    expect(findJemalloc((p) => (seen.push(p), p === paths[1]), () => true)).toBe(paths[1]);
    expect(seen).toEqual(paths.slice(0, 2));
    expect(findJemalloc(() => false, () => true)).toBeUndefined();
    expect(findJemalloc(() => true, () => false)).toBeUndefined();
    expect(jemallocPaths('x64')).toEqual(['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib64/libjemalloc.so.2']);
    expect(jemallocPaths('arm64')[0]).toBe('/usr/lib/aarch64-linux-gnu/libjemalloc.so.2');
    expect(jemallocPaths('ia32')).toEqual([]);
    expect(runsOnGlibc(() => '7f00-7f01 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6\n')).toBe(true);
    expect(runsOnGlibc(() => '7f00-7f01 r-xp 00000000 08:01 123 /lib/ld-musl-x86_64.so.1\n')).toBe(false);
    expect(runsOnGlibc(() => {
      throw new Error('no /proc');
    })).toBe(false);
  });

  it('does not restart twice, nor when switched off', () => {
    expect(leanExecPlan(['/bin/node', 's.ts', 'sidecar'], [], { SKEIN_LEAN_EXEC: '1' })).toBeUndefined();
    expect(leanExecPlan(['/bin/node', 's.ts', 'sidecar'], [], { SKEIN_LEAN_EXEC: '0' })).toBeUndefined();
  });

  it('keeps a NODE_COMPILE_CACHE the operator chose, else caches beside the code in node_modules/.cache', () => {
    expect(compileCacheDir({ NODE_COMPILE_CACHE: '/var/cache/skein' })).toBe('/var/cache/skein');
    expect(compileCacheDir({})).toMatch(/node_modules\/\.cache\/skein-compile\/$/);
  });
});

describe('skein sidecar restarted in place', () => {
  it('runs the command in the restarted process and fills the compile cache', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'skein-cc-'));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, NODE_COMPILE_CACHE: cache };
      delete env.SKEIN_LEAN_EXEC;
      const { stdout } = await promisify(execFile)(process.execPath, [SKEIN, 'sidecar', '--help'], { env, timeout: 15_000 });
      expect(stdout).toContain('Usage: skein sidecar');
      const versions = await readdir(cache);
      expect(versions.length).toBeGreaterThan(0);
      expect((await readdir(join(cache, versions[0] as string))).length).toBeGreaterThan(0);
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });

  it('keeps its pid and runs with the lean node flags', async () => {
    const args = ['--control-plane', '127.0.0.1:1', '--pod', 'p', '--namespace', 'default', '--ip', '127.0.0.1', '--mtls', 'off'];
    const ports = ['--outbound-address', '127.0.0.1:0', '--inbound-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'];
    await whileRunning(['sidecar', ...args, ...ports], 'sidecar started', (pid) => {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      for (const flag of LEAN_NODE_FLAGS) expect(cmdline).toContain(flag);
      expect(cmdline).toContain(SKEIN);
      // With jemalloc installed (CI installs it), the restarted sidecar has it mapped; without, glibc's malloc.
      const jemalloc = findJemalloc();
      const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
      if (jemalloc === undefined) expect(maps).not.toContain('libjemalloc');
      else expect(maps).toContain(jemalloc);
    });
  });
});

describe('skein control-plane restarted in place', () => {
  it('keeps its pid and runs with the glibc setting in its environment', async () => {
    const registry = fileURLToPath(new URL('../../examples/registry.yaml', import.meta.url));
    const args = ['--registry', registry, '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--xds-tls-address', 'none'];
    await whileRunning(['control-plane', ...args], '"serving"', (pid) => {
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      expect(environ).toContain(`MALLOC_TRIM_THRESHOLD_=${CONTROL_PLANE_PROFILE.env.MALLOC_TRIM_THRESHOLD_}`);
      expect(environ).toContain('SKEIN_LEAN_EXEC=1');
    });
  });
});

/**
 * Runs `skein <args>` as a fresh process (no restart marker or glibc setting inherited), waits for `ready` on its
 * stderr, checks it by the pid it was started with (the restart must keep it), then stops it.
 */
async function whileRunning(args: string[], ready: string, check: (pid: number) => void): Promise<void> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.SKEIN_LEAN_EXEC;
  delete env.MALLOC_TRIM_THRESHOLD_;
  delete env.SKEIN_MALLOC;
  delete env.LD_PRELOAD;
  delete env.MALLOC_CONF;
  const child = spawn(process.execPath, [SKEIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    let stderr = '';
    child.stderr.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (s: string) => {
        stderr += s;
        if (stderr.includes(ready)) resolve();
      });
      child.once('exit', (code) => reject(new Error(`skein ${args[0]} exited ${code}: ${stderr}`)));
    });
    check(child.pid as number);
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
  }
}
