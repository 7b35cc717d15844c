// The post-config garbage collection: once after changes stop, rarely, never after stop().
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ConfigSettler } from '../../../sidecar/xds/settle.ts';

describe('ConfigSettler', () => {
  it('collects once, after the changes stop', async () => {
    let runs = 0;
    const s = new ConfigSettler({ quietMs: 40, minIntervalMs: 0, collect: () => runs++ });
    for (let i = 0; i < 5; i++) {
      s.changed();
      await sleep(10);
    }
    expect(runs).toBe(0);
    await sleep(80);
    expect(runs).toBe(1);
    s.stop();
  });

  it('waits out the minimum interval between collections', async () => {
    let runs = 0;
    const s = new ConfigSettler({ quietMs: 10, minIntervalMs: 150, collect: () => runs++ });
    s.changed();
    await sleep(40);
    expect(runs).toBe(1);
    s.changed();
    await sleep(40);
    expect(runs).toBe(1);
    await sleep(150);
    expect(runs).toBe(2);
    s.stop();
  });

  it('does nothing after stop()', async () => {
    let runs = 0;
    const s = new ConfigSettler({ quietMs: 10, collect: () => runs++ });
    s.changed();
    s.stop();
    s.changed();
    await sleep(40);
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
