import { describe, it, expect } from 'vitest';
import { buildPicker } from '../../../sidecar/lb/index.ts';
import { fake, seeded } from './fake.ts';

describe('ring-hash', () => {
  it('sends the same key to the same endpoint', () => {
    const p = buildPicker('ring-hash', [fake('a'), fake('b'), fake('c')])!;
    for (let i = 0; i < 50; i++) expect(p.pick({ hash: `user-${i}` })).toBe(p.pick({ hash: `user-${i}` }));
  });

  it('moves only the keys of a removed endpoint', () => {
    const a = fake('10.0.0.1:80');
    const b = fake('10.0.0.2:80');
    const c = fake('10.0.0.3:80');
    const before = buildPicker('ring-hash', [a, b, c])!;
    const after = buildPicker('ring-hash', [a, b, { ...c, health: 'draining' }])!;
    let moved = 0;
    for (let i = 0; i < 3000; i++) {
      const k = `session-${i}`;
      const x = before.pick({ hash: k })!;
      const y = after.pick({ hash: k })!;
      if (x.key !== c.key) expect(y.key).toBe(x.key);
      else moved++;
    }
    expect(moved).toBeGreaterThan(600);
  });

  it('without a hash key picks by weight at random', () => {
    const p = buildPicker('ring-hash', [fake('a', 1), fake('b', 1)], { random: seeded(3) })!;
    const keys = new Set(Array.from({ length: 100 }, () => p.pick({ hash: undefined })!.key));
    expect(keys.size).toBe(2);
  });
});
