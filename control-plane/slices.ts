// Long synchronous work in slices: generators yield at safe points; a driver gives the event loop a turn between slices.

/** Work that yields (nothing) wherever it may be paused, and returns its result. */
export type Sliced<T> = Generator<void, T, void>;

/** How long a slice runs before the event loop gets a turn (ms): /healthz, keepalives and xDS writes wait at most this. */
export const DEFAULT_SLICE_MS = 10;

/** Runs the work to completion without pausing (for callers that need the result now, and for small inputs). */
export function runNow<T>(work: Sliced<T>): T {
  let step = work.next();
  while (!step.done) step = work.next();
  return step.value;
}

/** What a sliced run gives: the result at once when the work fit in the first slice, else a promise of it. */
export type SlicedResult<T> = { readonly done: true; readonly value: T } | { readonly done: false; readonly promise: Promise<T> };

/** How many times sliced work has let the event loop run (exported for tests and the debug log). */
export const sliceStats = { turns: 0 };

/**
 * Runs the work for `sliceMs` at a time, with a macrotask turn (setImmediate: timers, I/O and HTTP/2 frames all run)
 * between slices. Work that finishes within the first slice completes synchronously, as a plain call would.
 */
export function runSliced<T>(work: Sliced<T>, sliceMs = DEFAULT_SLICE_MS): SlicedResult<T> {
  const deadline = performance.now() + sliceMs;
  for (;;) {
    const step = work.next();
    if (step.done) return { done: true, value: step.value };
    if (performance.now() >= deadline) break;
  }
  return { done: false, promise: finish(work, sliceMs) };
}

async function finish<T>(work: Sliced<T>, sliceMs: number): Promise<T> {
  for (;;) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    sliceStats.turns++;
    const deadline = performance.now() + sliceMs;
    for (;;) {
      const step = work.next();
      if (step.done) return step.value;
      if (performance.now() >= deadline) break;
    }
  }
}

/** The result of a sliced run as a promise (for async callers that do not care whether it was synchronous). */
export function slicedPromise<T>(result: SlicedResult<T>): Promise<T> {
  return result.done ? Promise.resolve(result.value) : result.promise;
}
