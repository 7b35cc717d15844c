import { describe, it, expect } from 'vitest';
import { buildPicker, EJECT_BASE_MS, EndpointLoad } from '../../../sidecar/lb/index.ts';
import { fake, seeded } from './fake.ts';

describe('peak EWMA load', () => {
  it('jumps to a slower sample at once and decays towards faster ones over time', () => {
    let now = 0;
    const load = new EndpointLoad(() => now, 30, 10_000);
    expect(load.latencyMs).toBe(30);
    load.observe(100);
    expect(load.latencyMs).toBe(100);
    now = 10_000; // one decay period: weight e^-1 on the old value
    load.observe(10);
    expect(load.latencyMs).toBeCloseTo(100 * Math.exp(-1) + 10 * (1 - Math.exp(-1)), 6);
  });

  it('tracks in-flight requests in its cost', () => {
    let now = 0;
    const load = new EndpointLoad(() => now, 30, 10_000);
    const t1 = load.start();
    load.start();
    expect(load.active).toBe(2);
    expect(load.cost()).toBe(90);
    now = 5;
    load.finish(t1);
    expect(load.active).toBe(1);
  });

  it('lets an idle endpoint recover: one slow first answer does not starve it', () => {
    let now = 0;
    const slowStart = new EndpointLoad(() => now, 30, 10_000);
    const steady = new EndpointLoad(() => now, 30, 10_000);
    slowStart.observe(400); // a cold first request
    for (let t = 0; t <= 60_000; t += 100) {
      now = t;
      steady.finish(steady.start() - 5); // answers in 5 ms, busy all the time
    }
    now = 60_000;
    expect(slowStart.latencyMs).toBe(400); // nothing new was observed...
    expect(slowStart.cost()).toBeLessThan(steady.cost()); // ...but idle time decayed its cost below the busy one's
  });
});

describe('warm-up', () => {
  it('does not take the latency of requests sent before the endpoint first answered as a peak; later ones count', () => {
    let now = 0;
    const load = new EndpointLoad(() => now, 30, 10_000);
    const a = load.start();
    const b = load.start(); // both sent while the endpoint was cold
    now = 400;
    load.finish(a); // its first answer, 400 ms: its own cold start
    expect(load.latencyMs).toBe(30);
    now = 450;
    load.finish(b);
    expect(load.latencyMs).toBe(30);
    const c = load.start(); // sent after it answered: a real sample
    now = 750;
    load.finish(c);
    expect(load.latencyMs).toBe(300);
  });

  it('takes a warm-up answer faster than the estimate', () => {
    let now = 0;
    const load = new EndpointLoad(() => now, 30, 10_000);
    const a = load.start();
    now = 10_000;
    load.finish(a);
    expect(load.latencyMs).toBe(30); // 10 s: slower than 30 ms, not taken
    const fresh = new EndpointLoad(() => now, 30, 10_000);
    const b = fresh.start();
    now += 5;
    fresh.finish(b);
    expect(fresh.latencyMs).toBeLessThan(30);
  });

  it('keeps P2C from starving the replica whose cold start was slowest', () => {
    let now = 0;
    const eps = ['a', 'b', 'c'].map((k) => fake(k, 1, 'healthy', () => now));
    const p = buildPicker('p2c-ewma', eps, { random: seeded(7) })!;
    // Each replica's first answer pays its own cold start: c's the longest.
    const cold = { a: 40, b: 60, c: 400 } as Record<string, number>;
    for (const e of eps) {
      const t = e.load.start();
      now += cold[e.key] as number;
      e.load.finish(t);
      now -= cold[e.key] as number;
    }
    now += 400;
    const picks = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const e = p.pick({ hash: undefined })!;
      picks.set(e.key, (picks.get(e.key) ?? 0) + 1);
      const t = e.load.start();
      now += 5; // warm: every replica answers in 5 ms
      e.load.finish(t);
    }
    expect(picks.get('c') ?? 0).toBeGreaterThan(50);
  });
});

describe('streams', () => {
  it('a TCP stream or tunnel that ends is no latency sample (a 60 s WebSocket is not a 60 s answer); its failure counts', () => {
    let now = 0;
    const load = new EndpointLoad(() => now, 30, 10_000);
    load.finish(load.start()); // warm
    load.start();
    now = 60_000;
    load.endStream();
    expect([load.active, load.total, load.failed]).toEqual([0, 2, 0]);
    expect(load.latencyMs).toBe(30);
    load.start();
    load.endStream(true);
    expect(load.failed).toBe(1);
    expect(load.ejectedForMs).toBe(EJECT_BASE_MS);
  });
});

describe('streams open across an ejection', () => {
  it('streams opened before an ejection that fail after it re-eject without a strike (the wait stays 250 ms)', () => {
    let now = 0;
    const load = new EndpointLoad(() => now, 30, 10_000);
    const opened = [1, 2, 3, 4].map(() => load.start());
    now = 10;
    load.endStream(true, opened[0]);
    expect(load.ejectedForMs).toBe(EJECT_BASE_MS);
    for (const at of opened.slice(1)) {
      now += EJECT_BASE_MS + 1;
      load.endStream(true, at);
      expect(load.ejectedForMs).toBe(EJECT_BASE_MS);
    }
  });
});

describe('failure accrual', () => {
  it('ejects a failed endpoint for 250 ms, doubling per failed probe up to 10 s; a probe that succeeds ends it', () => {
    let now = 0;
    const failing = new EndpointLoad(() => now, 30, 10_000);
    failing.observe(50);
    failing.finish(failing.start(), true); // refused in 0 ms: not a fast answer
    expect([failing.failed, failing.ejected, failing.ejectedForMs]).toEqual([1, true, 250]);
    expect(failing.latencyMs).toBe(50); // a failure is no latency
    // Each probe after the time is up that fails doubles it, to at most 10 s.
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      now += failing.ejectedForMs;
      expect(failing.ejected).toBe(false); // back in the choice: the probe
      failing.finish(failing.start(), true);
      seen.push(failing.ejectedForMs);
    }
    expect(seen).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    // A probe that succeeds ends the streak: the next failure is a first one again.
    now += failing.ejectedForMs;
    failing.finish(failing.start());
    expect(failing.ejected).toBe(false);
    failing.finish(failing.start(), true);
    expect(failing.ejectedForMs).toBe(250);
  });

  it('does not lengthen it for requests that were in flight when it began, during it or after', () => {
    let now = 0;
    const load = new EndpointLoad(() => now, 30, 10_000);
    const sent = Array.from({ length: 6 }, () => load.start()); // all at t = 0 (say, against an endpoint that hangs)
    const windows: number[] = [];
    for (const [i, at] of [100, 400, 1000, 2100, 4300, 8700].entries()) {
      now = at;
      load.finish(sent[i] as number, true);
      windows.push(load.ejectedForMs);
    }
    // The first ejects; the others, failing after it ended, eject again for the same 250 ms, not 500, 1000, ...
    expect(windows).toEqual([250, 250, 250, 250, 250, 250]);
    expect(load.failed).toBe(6);
  });

  it('is forgiven when the endpoint comes back into rotation; its latency history stays', () => {
    const now = 0;
    const load = new EndpointLoad(() => now, 30, 10_000);
    load.observe(40);
    load.finish(load.start(), true);
    load.forgive();
    expect(load.latencyMs).toBe(40);
    expect(load.ejected).toBe(false);
    expect(load.cost()).toBe(40);
  });
});

describe('p2c-ewma with ejected endpoints', () => {
  it('never picks an ejected endpoint while another is not, even when both draws are ejected', () => {
    const eps = ['live', 'out1', 'out2'].map((k) => fake(k));
    for (const e of eps.slice(1)) e.load.finish(e.load.start(), true);
    const p = buildPicker('p2c-ewma', eps, { random: seeded(3) })!;
    const picks = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const k = p.pick({ hash: undefined })!.key;
      picks.set(k, (picks.get(k) ?? 0) + 1);
    }
    expect(picks.get('live')).toBe(3000);
  });

  it('balances by load as usual when every endpoint is ejected (panic mode)', () => {
    const eps = ['a', 'b', 'c', 'd'].map((k) => fake(k));
    for (const e of eps) e.load.finish(e.load.start(), true);
    const p = buildPicker('p2c-ewma', eps, { random: seeded(7) })!;
    for (let i = 0; i < 400; i++) p.pick({ hash: undefined })!.load.start(); // left in flight
    const active = eps.map((e) => e.load.active);
    expect(Math.max(...active) - Math.min(...active)).toBeLessThanOrEqual(2);
  });
});

describe('p2c-ewma', () => {
  it('prefers the endpoint with lower latency × (active + 1)', () => {
    const fast = fake('fast');
    const slow = fake('slow');
    slow.load.observe(500);
    const p = buildPicker('p2c-ewma', [fast, slow], { random: seeded(5) })!;
    // With two endpoints both are always the candidates, so the cheaper one always wins.
    for (let i = 0; i < 20; i++) expect(p.pick({ hash: undefined })!.key).toBe('fast');
  });

  it('moves load away from an endpoint as its in-flight count grows (expected state sequence)', () => {
    const a = fake('a');
    const b = fake('b');
    const p = buildPicker('p2c-ewma', [a, b], { random: seeded(9) })!;
    const seq: string[] = [];
    for (let i = 0; i < 6; i++) {
      const e = p.pick({ hash: undefined })!;
      e.load.start(); // never finished: in-flight grows
      seq.push(e.key);
    }
    // Equal latency: each pick goes to the less busy one (ties to the first candidate), so they alternate in pairs.
    expect(seq.filter((k) => k === 'a').length).toBe(3);
    expect(seq.filter((k) => k === 'b').length).toBe(3);
    expect(a.load.active).toBe(3);
  });

  it('spreads over many endpoints, avoiding a slow one', () => {
    const eps = Array.from({ length: 10 }, (_, i) => fake(`e${i}`));
    eps[0]!.load.observe(1000);
    const p = buildPicker('p2c-ewma', eps, { random: seeded(11) })!;
    const c: Record<string, number> = {};
    for (let i = 0; i < 5000; i++) {
      const k = p.pick({ hash: undefined })!.key;
      c[k] = (c[k] ?? 0) + 1;
    }
    expect(c['e0'] ?? 0).toBe(0);
    expect(Object.keys(c).length).toBe(9);
  });
});
