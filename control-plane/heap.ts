// The control plane's V8 heap policy: a small young generation, and young collections paced by request bytes read.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * On a machine with a few GB of memory V8 lets the young generation grow to 64 MiB semi-spaces (128 MiB committed,
 * all of it resident after the first large allocation burst such as the registry's first load). The control plane
 * keeps little short-lived garbage between publishes, so it stops the growth where start-up left it (16 MiB
 * semi-spaces on Node 24, the default of earlier Node versions). Measured at 1000 Services: 448 MB → 280 MB RSS.
 * `--max-semi-space-size` on the node command line does the same and wins when given (it is read at start-up;
 * this growth factor is read at every growth, so it can be set at run time). SKEIN_YOUNG_GEN=default keeps V8's.
 */
export function limitYoungGeneration(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.SKEIN_YOUNG_GEN === 'default') return false;
  if (process.execArgv.some((a) => a.startsWith('--max-semi-space-size'))) return false;
  if ((env.NODE_OPTIONS ?? '').includes('--max-semi-space-size')) return false;
  setFlagsFromString('--semi-space-growth-factor=1');
  return true;
}

/*
 * Why young collections are paced by bytes read: Node's HTTP/2 session reads each socket read into a buffer of its own
 * (an ArrayBuffer, outside the JS heap) and hands out views of it. At 1000 SotW proxies every change brings 1000 ACKs
 * of ~57 KB each, read in a few event-loop turns: ~60 MB of such buffers, dead as soon as request-decoder.ts has copied
 * them, but freed only when their (young) ArrayBuffer objects are collected. The control plane allocates little JS in
 * that burst, so few young collections run, the dead buffers count as external memory, and once that has grown 64 MB
 * since the last full GC V8 starts one ("external memory pressure": 67 of 81 full GCs in a SotW bench run, each
 * 60-150 ms of marking on the control plane's one core, inside the fan-out it delays). A young collection after every
 * SKEIN_READ_GC_MB (default 16) MiB of request bytes frees them first, for a few ms each (3-4 per change at 1000
 * proxies). It cannot free buffers read while V8's marking is already under way (those live until it ends), so it
 * roughly halves the full GCs inside change windows rather than ending them; measured at 1000 proxies (10 runs
 * each): single-change p99 over 250 ms in 0 of 10 runs instead of 4, median p99 187 ms instead of 194, churn and RSS
 * unchanged. SKEIN_READ_GC_MB=0 switches it off.
 */
const READ_GC_DEFAULT_MB = 16;
let readGc: (() => void) | undefined;
let readGcEvery = Number.POSITIVE_INFINITY;
let readSince = 0;
let readGcCount = 0;

/** Counts request bytes read from the network; runs a young collection when enough have been read (see above). */
export function noteReadBytes(bytes: number): void {
  readSince += bytes;
  if (readSince < readGcEvery) return;
  readSince = 0;
  if (readGc === undefined) return;
  readGcCount++;
  readGc();
}

/** Young collections run by noteReadBytes since the process started. */
export function readGcRuns(): number {
  return readGcCount;
}

/**
 * A function running one young-generation collection (a scavenge), or undefined when V8 will not give one. Uses the
 * global `gc` when node runs with --expose-gc; otherwise switches the flag on just long enough to create one context
 * that has `gc` (the main context does not get it; later contexts do not either).
 */
export function minorGcFunction(): (() => void) | undefined {
  try {
    let gc = globalThis.gc;
    if (gc === undefined) {
      setFlagsFromString('--expose-gc');
      try {
        gc = runInNewContext('gc') as NodeJS.GCFunction | undefined;
      } finally {
        setFlagsFromString('--no-expose-gc');
      }
    }
    if (typeof gc !== 'function') return undefined;
    const collect = gc;
    return () => {
      collect({ type: 'minor' });
    };
  } catch {
    return undefined;
  }
}

/**
 * Switches on young collections paced by request bytes (noteReadBytes), every SKEIN_READ_GC_MB MiB (default 16; 0 or
 * not a positive number: off); `collect` is for tests. Returns whether they are on.
 */
export function paceYoungGcByReads(env: NodeJS.ProcessEnv = process.env, collect?: () => void): boolean {
  const raw = env.SKEIN_READ_GC_MB;
  const mb = raw === undefined || raw.trim() === '' ? READ_GC_DEFAULT_MB : Number(raw);
  readSince = 0;
  readGc = mb > 0 && Number.isFinite(mb) ? (collect ?? minorGcFunction()) : undefined;
  readGcEvery = readGc === undefined ? Number.POSITIVE_INFINITY : mb * 1024 * 1024;
  return readGc !== undefined;
}
