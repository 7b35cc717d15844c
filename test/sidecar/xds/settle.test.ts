// The post-config garbage collection: once after changes stop, rarely, never after stop().
import { setTimeout as sleep } from 'node:timers/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LEAN_NODE_FLAGS } from '../../../cli/lean-exec.ts';
import { ConfigSettler } from '../../../sidecar/xds/settle.ts';

describe('ConfigSettler', () => {
  // On a fake clock: with real timers and fixed sleeps, a stall of the test process (a loaded CI machine) of ~110 ms
  // after the first collection let the second one fall inside the sleep that expects none yet.
  const fake = () => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('collects once, after the changes stop', () => {
    fake();
    let runs = 0;
    const s = new ConfigSettler({ quietMs: 40, minIntervalMs: 0, collect: () => runs++ });
    for (let i = 0; i < 5; i++) {
      s.changed();
      vi.advanceTimersByTime(10);
    }
    expect(runs).toBe(0);
    vi.advanceTimersByTime(29);
    expect(runs).toBe(0);
    vi.advanceTimersByTime(1);
    expect(runs).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(runs).toBe(1);
    s.stop();
  });

  it('waits out the minimum interval between collections', () => {
    fake();
    let runs = 0;
    const s = new ConfigSettler({ quietMs: 10, minIntervalMs: 150, collect: () => runs++ });
    s.changed();
    vi.advanceTimersByTime(40);
    expect(runs).toBe(1); // at 10 ms
    s.changed();
    vi.advanceTimersByTime(40);
    expect(runs).toBe(1);
    vi.advanceTimersByTime(79);
    expect(runs).toBe(1);
    vi.advanceTimersByTime(1);
    expect(runs).toBe(2); // 150 ms after the first
    s.stop();
  });

  it('compacts after the first config only', () => {
    fake();
    const calls: boolean[] = [];
    const s = new ConfigSettler({ quietMs: 5, minIntervalMs: 0, collect: (first) => calls.push(first) });
    for (let i = 0; i < 3; i++) {
      s.changed();
      vi.advanceTimersByTime(30);
    }
    expect(calls).toEqual([true, false, false]);
    s.stop();
  });

  it('the first default collection compacts: the old generation keeps far fewer pages than after a plain GC', async () => {
    // In a fresh Node each with the sidecar's small young generation (a test runner's own heap would blur it): fill the
    // old generation, drop 7 of 8 objects, collect, and report the old generation's resident size.
    const script = (collect: string) => `
      import { getHeapSpaceStatistics } from 'node:v8';
      import { ConfigSettler } from ${JSON.stringify(new URL('../../../sidecar/xds/settle.ts', import.meta.url).href)};
      let keep = [];
      for (let i = 0; i < 300000; i++) keep.push({ i, s: 'x' + i });
      await new Promise((r) => setTimeout(r, 20));
      keep = keep.filter((_, i) => i % 8 === 0);
      const s = new ConfigSettler({ quietMs: 0, minIntervalMs: 0${collect} });
      s.changed();
      await new Promise((r) => setTimeout(r, 100));
      const old = getHeapSpaceStatistics().find((x) => x.space_name === 'old_space');
      process.stdout.write(String(old.physical_space_size) + ' ' + keep.length);
    `;
    const run = async (collect: string, flags: string[]) => {
      const { stdout } = await promisify(execFile)(process.execPath, [...LEAN_NODE_FLAGS, ...flags, '--input-type=module', '-e', script(collect)]);
      const [resident, kept] = stdout.split(' ').map(Number);
      expect(kept).toBe(37_500);
      return resident as number;
    };
    const compacted = await run('', []);
    const plain = await run(', collect: () => gc()', ['--expose-gc']);
    expect(compacted).toBeLessThan(plain / 2);
  });

  it('does nothing after stop()', () => {
    fake();
    let runs = 0;
    const s = new ConfigSettler({ quietMs: 10, collect: () => runs++ });
    s.changed();
    s.stop();
    s.changed();
    vi.advanceTimersByTime(1000);
    expect(runs).toBe(0);
  });

  it('runs V8’s full GC by default without exposing a global gc', async () => {
    const s = new ConfigSettler({ quietMs: 0, minIntervalMs: 0 });
    const hadGc = 'gc' in globalThis;
    s.changed();
    await sleep(30);
    expect('gc' in globalThis).toBe(hadGc);
    s.stop();
  });
});
