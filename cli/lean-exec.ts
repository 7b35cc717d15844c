// Restarts a long-running command in place (execve) with Node's compile cache and its small-footprint settings.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * V8 flags for a small idle footprint that cost the data path nothing measurable (see the README's benchmark):
 * a young generation of at most 2 × 2 MiB semi-spaces instead of 2 × 16 MiB (scavenges stay cheap because a proxy's
 * garbage dies young), and at most two V8 helper threads.
 */
export const LEAN_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--v8-pool-size=2'];

/** What a long-running command restarts with: node flags (before the caller's own) and environment to start with. */
export interface ExecProfile {
  readonly nodeFlags: readonly string[];
  /** Set unless the operator already set them. */
  readonly env: Readonly<Record<string, string>>;
  /** Preload the system's jemalloc when it is installed (see JEMALLOC_CONF). */
  readonly jemalloc: boolean;
}

/**
 * Where Debian and Ubuntu (per architecture), and Fedora and RHEL install jemalloc 5 (Debian's package:
 * libjemalloc2), for this process's architecture. Fixed system paths only: a preloaded library runs with the
 * sidecar's privileges, so it is never looked up on a path the process does not trust.
 */
export function jemallocPaths(arch: string = process.arch): readonly string[] {
  const triplet = arch === 'x64' ? 'x86_64-linux-gnu' : arch === 'arm64' ? 'aarch64-linux-gnu' : undefined;
  if (triplet === undefined) return [];
  return [`/usr/lib/${triplet}/libjemalloc.so.2`, '/usr/lib64/libjemalloc.so.2'];
}

/**
 * Whether this node runs on glibc (its maps name libc.so.6): the paths above hold glibc builds, and a musl node
 * (Alpine) would fail to start with one preloaded, with no way back after the exec.
 */
export function runsOnGlibc(maps: () => string = () => readFileSync('/proc/self/maps', 'utf8')): boolean {
  try {
    return /\/libc\.so\.6$/m.test(maps());
  } catch {
    return false;
  }
}

/**
 * jemalloc for a proxy: one arena (the main thread does nearly all the allocating), and a background thread that
 * returns unused pages to the system (jemalloc's default ten-second decay curve: within a minute of a burst here). glibc keeps the buffers a
 * burst of connections freed (TLS records, socket reads) in the middle of its heap, where it cannot trim them: after
 * `wrk -c1000` through the demo the caller's sidecar was at 152 MB a minute later with glibc, 101 MB with this, at the
 * same CPU per request (README, Benchmarks). A decay of one second cost the mTLS path about a tenth more CPU.
 */
export const JEMALLOC_CONF = 'narenas:1,background_thread:true';

/** The first of jemallocPaths() that exists, when node runs on glibc; else undefined. */
export function findJemalloc(exists: (path: string) => boolean = existsSync, glibc: () => boolean = runsOnGlibc): string | undefined {
  if (!glibc()) return undefined;
  return jemallocPaths().find((p) => exists(p));
}

/** `skein sidecar`: one per workload, so the smallest idle footprint. */
export const SIDECAR_PROFILE: ExecProfile = { nodeFlags: LEAN_NODE_FLAGS, env: {}, jemalloc: true };

/**
 * `skein control-plane`: glibc raises its mmap threshold (up to 32 MiB) each time a large mmapped buffer is freed, and
 * then serves the next large buffers from its heaps, whose pages stay resident after they are freed. The control
 * plane allocates and frees a large buffer per proxy per response, so that memory piles up. Setting the trim
 * threshold (to glibc's own default) switches the adjustment off, and large buffers go back to the system when they
 * are freed. At 1000 proxies, steady RSS went from 550–580 MB to 478 MB (README, Benchmarks). glibc reads it only
 * at start-up, hence the restart; other C libraries ignore it.
 */
export const CONTROL_PLANE_PROFILE: ExecProfile = { nodeFlags: [], env: { MALLOC_TRIM_THRESHOLD_: '131072' }, jemalloc: false };

/** Set in the restarted process so it does not restart again. */
const MARKER = 'SKEIN_LEAN_EXEC';

/**
 * The compile cache lives beside the code it caches (node_modules/.cache), as trusted as the code itself; a cache in a
 * shared temporary directory could be written by another user. NODE_COMPILE_CACHE, when set, wins.
 */
export function compileCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  return env.NODE_COMPILE_CACHE ?? fileURLToPath(new URL('../node_modules/.cache/skein-compile/', import.meta.url));
}

export interface LeanExecPlan {
  readonly file: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/**
 * What to exec, or undefined when we should run here: already restarted, switched off (SKEIN_LEAN_EXEC=0), or no
 * process.execve (Node < 23.11, Windows). The caller's own node flags (e.g. --cpu-prof) come after ours, so they win.
 * jemalloc is preloaded when the profile asks for it, it is installed, and the operator set neither LD_PRELOAD nor
 * SKEIN_MALLOC=system.
 */
export function leanExecPlan(
  argv: readonly string[] = process.argv,
  execArgv: readonly string[] = process.execArgv,
  env: Readonly<Record<string, string | undefined>> = process.env,
  profile: ExecProfile = SIDECAR_PROFILE,
  jemalloc: () => string | undefined = findJemalloc,
): LeanExecPlan | undefined {
  if (env[MARKER] !== undefined || typeof process.execve !== 'function') return undefined;
  const script = argv[1];
  if (script === undefined) return undefined;
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
  for (const [k, v] of Object.entries(profile.env)) clean[k] ??= v;
  if (profile.jemalloc && env.SKEIN_MALLOC !== 'system' && env.LD_PRELOAD === undefined) {
    const lib = jemalloc();
    if (lib !== undefined) {
      clean.LD_PRELOAD = lib;
      clean.MALLOC_CONF ??= JEMALLOC_CONF;
    }
  }
  clean[MARKER] = '1';
  clean.NODE_COMPILE_CACHE = compileCacheDir(env);
  return { file: process.execPath, args: [process.execPath, ...profile.nodeFlags, ...execArgv, script, ...argv.slice(2)], env: clean };
}

/** Replaces this process with the lean one (same pid, stdio, CPU affinity); returns only when it does not. */
export function leanExec(profile: ExecProfile = SIDECAR_PROFILE): void {
  const plan = leanExecPlan(process.argv, process.execArgv, process.env, profile);
  if (plan === undefined) return;
  try {
    process.execve?.(plan.file, [...plan.args], plan.env);
  } catch (err) {
    // execve failed before replacing us (e.g. EACCES): run here, only bigger.
    process.stderr.write(`skein: cannot restart with a small footprint (${(err as Error).message}); continuing\n`);
  }
}
