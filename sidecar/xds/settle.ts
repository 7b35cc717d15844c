// Once a config change has settled, one full GC, so an idle sidecar does not sit on the garbage that decoding left.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { logger } from '../log.ts';

const log = logger('xds');

type GcFunction = (options?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;
let gcFunction: GcFunction | undefined;

/**
 * V8's gc(), exposed on demand (no --expose-gc on the command line, no global `gc` for other code to find).
 * `compact`: the 'last-resort' flavour, V8's memory-reducing collection (what its memory reducer runs after a while
 * idle): repeated full GCs that compact the old generation, so the pages decoding left half empty go back to the
 * system now rather than tens of seconds later. With 1200 clusters it pauses ~80 ms instead of ~30 ms.
 */
function fullGc(compact: boolean): void {
  if (gcFunction === undefined) {
    const g = (globalThis as { gc?: GcFunction }).gc;
    if (g !== undefined) gcFunction = g;
    else {
      setFlagsFromString('--expose-gc');
      gcFunction = runInNewContext('gc') as GcFunction;
      setFlagsFromString('--no-expose-gc');
    }
  }
  gcFunction(compact ? { type: 'major', execution: 'sync', flavor: 'last-resort' } : undefined);
}

export interface SettleOptions {
  /** Quiet time after the last change before collecting (default 2 s). */
  readonly quietMs?: number;
  /** At most one collection per this long (default 60 s): endpoint churn must not turn into steady GC pauses. */
  readonly minIntervalMs?: number;
  /** The collection itself (tests); default V8's full GC, compacting (`first`) after the first config. */
  readonly collect?: (first: boolean) => void;
}

/**
 * Decoding 1000 clusters allocates several times what the result keeps; V8 left alone keeps that heap (and its
 * resident pages) until allocation pressure says otherwise, which an idle sidecar never does. A full GC on a heap
 * of a few tens of MiB pauses for ~10–30 ms, so it runs only after changes stop, and rarely. The first one (after
 * the initial config, the largest decode, usually before any traffic) also compacts: 7 MiB less idle RSS with 1200
 * clusters, for one ~80 ms pause; later ones do not, so config churn never pauses longer than before.
 */
export class ConfigSettler {
  private readonly quietMs: number;
  private readonly minIntervalMs: number;
  private readonly collect: (first: boolean) => void;
  private runs = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastAt = Number.NEGATIVE_INFINITY;
  private stopped = false;

  constructor(options: SettleOptions = {}) {
    this.quietMs = options.quietMs ?? 2000;
    this.minIntervalMs = options.minIntervalMs ?? 60_000;
    this.collect = options.collect ?? fullGc;
  }

  /** A config was applied: (re)starts the quiet period. */
  changed(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const wait = Math.max(this.quietMs, this.lastAt + this.minIntervalMs - Date.now());
    this.timer = setTimeout(() => this.run(), wait);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private run(): void {
    this.timer = undefined;
    this.lastAt = Date.now();
    const started = performance.now();
    try {
      this.collect(this.runs++ === 0);
    } catch (err) {
      log.warn('post-config garbage collection failed', { error: (err as Error).message });
      return;
    }
    log.debug('collected garbage after config change', { ms: Math.round(performance.now() - started) });
  }
}
