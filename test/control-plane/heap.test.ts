// The heap policy: young collections paced by request bytes, and the minor-GC function they use.
import { constants, PerformanceObserver, performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { minorGcFunction, noteReadBytes, paceYoungGcByReads, readGcRuns } from '../../control-plane/heap.ts';
import { PooledStreamDecoder } from '../../control-plane/xds/request-decoder.ts';

const MiB = 1024 * 1024;

afterEach(() => {
  paceYoungGcByReads({ SKEIN_READ_GC_MB: '0' });
});

describe('young collections paced by request bytes', () => {
  it('run every 16 MiB by default', () => {
    let runs = 0;
    expect(paceYoungGcByReads({}, () => runs++)).toBe(true);
    noteReadBytes(16 * MiB - 1);
    expect(runs).toBe(0);
    noteReadBytes(1);
    expect(runs).toBe(1);
  });

  it('are off when SKEIN_READ_GC_MB is 0 or not a positive number', () => {
    let runs = 0;
    for (const env of [{ SKEIN_READ_GC_MB: '0' }, { SKEIN_READ_GC_MB: 'x' }, { SKEIN_READ_GC_MB: '-1' }]) {
      expect(paceYoungGcByReads(env, () => runs++)).toBe(false);
      noteReadBytes(64 * MiB);
    }
    expect(runs).toBe(0);
  });

  it('run once per SKEIN_READ_GC_MB MiB read, however the bytes are split', () => {
    let runs = 0;
    const before = readGcRuns();
    expect(paceYoungGcByReads({ SKEIN_READ_GC_MB: '2' }, () => runs++)).toBe(true);
    for (let i = 0; i < 100; i++) noteReadBytes(MiB / 10); // 10 MiB in all
    expect(runs).toBe(5);
    expect(readGcRuns() - before).toBe(5);
    noteReadBytes(2 * MiB - 1);
    expect(runs).toBe(5);
  });

  it('count what the SotW request decoder reads', () => {
    let runs = 0;
    paceYoungGcByReads({ SKEIN_READ_GC_MB: '1' }, () => runs++);
    const decoder = new PooledStreamDecoder(-1);
    const payload = Buffer.alloc(100_000, 1);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(payload.length, 1);
    const framed = Buffer.concat([head, payload]);
    let messages = 0;
    for (let i = 0; i < 30; i++) messages += decoder.write(framed).length; // ~3 MB
    expect(messages).toBe(30);
    expect(runs).toBe(2);
  });
});

describe('minorGcFunction', () => {
  it('runs a young-generation collection, and only that', async () => {
    const gc = minorGcFunction();
    expect(gc).toBeTypeOf('function');
    const entries: { start: number; kind: number }[] = [];
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) entries.push({ start: e.startTime, kind: (e as unknown as { detail: { kind: number } }).detail.kind });
    });
    observer.observe({ entryTypes: ['gc'] });
    let from = 0;
    let to = 0;
    try {
      from = performance.now();
      gc?.();
      to = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      observer.disconnect();
    }
    // The collections that ran inside the call (V8 may run others of its own in the wait).
    const during = entries.filter((e) => e.start >= from && e.start <= to).map((e) => e.kind);
    expect(during).toEqual([constants.NODE_PERFORMANCE_GC_MINOR]);
  });
});
