// Shared per-stream state: interned subscription sets and held versions as a snapshot map plus overrides.
import { describe, expect, it } from 'vitest';
import type { ResourcesByName, VersionedResource } from '../../../control-plane/cache/snapshot.ts';
import { editNames, HeldResources, internNames } from '../../../control-plane/xds/shared-state.ts';

const res = (name: string, version: string): VersionedResource => ({
  name,
  version,
  any: { type_url: 't', value: Buffer.from(version) },
  message: {},
});
const mapOf = (...rs: VersionedResource[]): ResourcesByName => new Map(rs.map((r) => [r.name, r]));

describe('internNames', () => {
  it('returns one set for equal subscriptions and a different one for different names', () => {
    const a = internNames(new Set(['x', 'y', 'z']));
    expect(internNames(new Set(['x', 'y', 'z']))).toBe(a);
    expect(internNames(new Set(['x', 'y']))).not.toBe(a);
    expect([...internNames(new Set(['z', 'y', 'x']))].sort()).toEqual(['x', 'y', 'z']);
  });
});

describe('editNames', () => {
  it('gives every stream making the same edit one shared set with the edit applied', () => {
    const base = internNames(new Set(['a', 'b', 'c']));
    const one = editNames(base, ['d'], ['a']);
    expect([...one].sort()).toEqual(['b', 'c', 'd']);
    expect(base.has('a')).toBe(true); // the shared set is never mutated
    expect(editNames(base, ['d'], ['a'])).toBe(one);
    expect(internNames(new Set(['b', 'c', 'd']))).toBe(one);
    expect(editNames(base, [], [])).toBe(base);
    const other = editNames(base, ['e'], []);
    expect([...other].sort()).toEqual(['a', 'b', 'c', 'e']);
    expect(other).not.toBe(one);
  });
});

describe('HeldResources', () => {
  it('answers like a plain map through sets, deletes and re-basing, within the subscription', () => {
    const names = new Set(['a', 'b', 'c', 'd']);
    const held = new HeldResources((n) => names.has(n));
    const v1 = mapOf(res('a', '1'), res('b', '1'), res('c', '1'), res('z', '1'));
    for (const r of v1.values()) if (names.has(r.name)) held.set(r.name, r);
    held.compact(v1, 0);
    expect(held.overrides).toBe(0);
    expect([...held.entries()].sort()).toEqual([['a', '1'], ['b', '1'], ['c', '1']]);
    expect(held.version('z')).toBeUndefined();

    const v2 = mapOf(res('a', '2'), res('b', '1'), res('c', '1'), res('d', '1'), res('z', '1'));
    held.set('a', v2.get('a')!);
    held.delete('c');
    held.set('d', 'from-client');
    expect(held.version('a')).toBe('2');
    expect(held.has('c')).toBe(false);
    expect(held.version('d')).toBe('from-client');
    held.compact(v2, 0);
    // a matches v2 now; c is in v2 but not held; d holds a version v2 does not have.
    expect(held.overrides).toBe(2);
    expect([...held.entries()].sort()).toEqual([['a', '2'], ['b', '1'], ['d', 'from-client']]);
    held.set('d', v2.get('d')!);
    held.set('c', v2.get('c')!);
    expect(held.overrides).toBe(0);
    names.delete('b');
    expect(held.has('b')).toBe(false);
  });

  it('does not count a base entry as held when its name comes into the subscription later', () => {
    const names = new Set(['a']);
    const held = new HeldResources((n) => names.has(n));
    const map = mapOf(res('a', '1'), res('b', '1'));
    held.set('a', map.get('a')!);
    held.compact(map, 0);
    held.enterScope('b');
    names.add('b');
    expect(held.has('b')).toBe(false);
    held.set('b', map.get('b')!);
    expect(held.version('b')).toBe('1');
    expect(held.overrides).toBe(0);
  });
});
