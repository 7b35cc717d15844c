import { describe, it, expect } from 'vitest';
import { buildPicker } from '../../../sidecar/lb/index.ts';
import { smoothSchedule } from '../../../sidecar/lb/round-robin.ts';
import { fake } from './fake.ts';

describe('round-robin', () => {
  it('cycles through equal endpoints in order from its start offset', () => {
    const p = buildPicker('round-robin', [fake('a'), fake('b'), fake('c')], { random: () => 0 })!;
    expect(Array.from({ length: 7 }, () => p.pick({ hash: undefined })!.key)).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });

  it('interleaves weights smoothly (5:1:1 → a a b a c a a)', () => {
    expect(smoothSchedule([5, 1, 1])).toEqual([0, 0, 1, 0, 2, 0, 0]);
  });

  it('reduces weights by their gcd', () => {
    expect(smoothSchedule([20, 10])).toEqual([0, 1, 0]);
  });

  it('follows a new endpoint set only through a new picker (old picker unchanged)', () => {
    const a = fake('a');
    const b = fake('b');
    const p1 = buildPicker('round-robin', [a, b], { random: () => 0 })!;
    const p2 = buildPicker('round-robin', [a, { ...b, health: 'draining' }], { random: () => 0 })!;
    expect([p1.pick({ hash: undefined })!.key, p1.pick({ hash: undefined })!.key]).toEqual(['a', 'b']);
    expect([p2.pick({ hash: undefined })!.key, p2.pick({ hash: undefined })!.key]).toEqual(['a', 'a']);
  });
});
