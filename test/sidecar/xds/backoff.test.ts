// Tests the ADS reconnect backoff: exponential ceilings with full jitter, capped, reset after a long-lived stream.
import { describe, expect, it } from 'vitest';
import { Backoff } from '../../../sidecar/xds/backoff.ts';

describe('Backoff', () => {
  it('doubles the ceiling from 250 ms up to the 15 s cap', () => {
    const top = new Backoff({}, () => 0.999999);
    const ceilings = Array.from({ length: 9 }, () => top.next() + 1);
    expect(ceilings).toEqual([250, 500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000]);
  });

  it('draws uniformly below the ceiling (full jitter)', () => {
    expect(new Backoff({}, () => 0).next()).toBe(0);
    expect(new Backoff({}, () => 0.5).next()).toBe(125);
  });

  it('starts over only after a stream that lived longer than 30 s', () => {
    const b = new Backoff({}, () => 0.999999);
    b.next();
    b.next();
    b.streamEnded(29_000);
    expect(b.next()).toBe(999);
    b.streamEnded(30_001);
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(249);
  });
});
