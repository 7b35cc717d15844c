// Per-stream state shared across ADS streams: interned subscription sets and "what the client holds" as a snapshot map plus overrides.
import { createHash } from 'node:crypto';
import type { ResourcesByName, VersionedResource } from '../cache/snapshot.ts';

const interned = new Map<string, WeakRef<ReadonlySet<string>>>();
const collected = new FinalizationRegistry<string>((key) => {
  if (interned.get(key)?.deref() === undefined) interned.delete(key);
});

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const name of a) if (!b.has(name)) return false;
  return true;
}

/**
 * Returns one shared, never-mutated Set for equal subscriptions: most proxies subscribe to the same thousands of
 * names, and 1000 copies would cost hundreds of MB. Equality is by content; the key hashes insertion order, so
 * subscriptions listed in the same order (the common case: the same client software) share one set.
 */
export function internNames(names: ReadonlySet<string>): ReadonlySet<string> {
  if (names.size === 0) return EMPTY_NAMES;
  const key = `${names.size}:${createHash('sha1').update([...names].join('\n')).digest('base64')}`;
  const hit = interned.get(key)?.deref();
  if (hit && sameSet(hit, names)) return hit;
  interned.set(key, new WeakRef(names));
  collected.register(names, key);
  return names;
}

export const EMPTY_NAMES: ReadonlySet<string> = new Set();

/** Per interned set: the set that an edit (names added, names removed) turns it into, shared like the sets. */
const transitions = new WeakMap<ReadonlySet<string>, Map<string, WeakRef<ReadonlySet<string>>>>();
/** Edits remembered per set; a subscription change is usually the same edit on every stream (a Service added). */
const MAX_TRANSITIONS = 64;

/**
 * `from` (an interned set) with `added` names added and `removed` names removed, interned. The result of an edit is
 * remembered on `from`, so when 1000 streams make the same change (all subscribe to a new Service's EDS name), only
 * the first pays for copying and hashing the whole set; the others cost a lookup of the edit.
 */
export function editNames(from: ReadonlySet<string>, added: readonly string[], removed: readonly string[]): ReadonlySet<string> {
  if (added.length === 0 && removed.length === 0) return from;
  const key = `${added.join('\n')}\u0000${removed.join('\n')}`;
  let cached = transitions.get(from);
  const hit = cached?.get(key)?.deref();
  if (hit) return hit;
  const next = new Set(from);
  for (const name of added) next.add(name);
  for (const name of removed) next.delete(name);
  const result = internNames(next);
  if (!cached) transitions.set(from, (cached = new Map()));
  if (cached.size >= MAX_TRANSITIONS) cached.clear();
  cached.set(key, new WeakRef(result));
  return result;
}

/** How many interned subscription sets are alive (for tests and debugging). */
export function internedCount(): number {
  return interned.size;
}

const EMPTY_MAP: ResourcesByName = new Map();

/** A version the client said it holds (delta initial_resource_versions), or a resource we sent, or nothing. */
type Held = VersionedResource | string | null;

const versionOfHeld = (h: Held | undefined): string | undefined => (h === null || h === undefined ? undefined : typeof h === 'string' ? h : h.version);

/**
 * What a delta client holds, name → version, within its subscription: a reference to an immutable snapshot map
 * (shared by every stream that holds the same) plus a small per-stream override map. Versions are kept as
 * references to the VersionedResource, never copied. `inScope` says whether a base entry counts (the subscription).
 */
export class HeldResources {
  private base: ResourcesByName = EMPTY_MAP;
  private over = new Map<string, Held>();
  private readonly inScope: (name: string) => boolean;

  constructor(inScope: (name: string) => boolean) {
    this.inScope = inScope;
  }

  get overrides(): number {
    return this.over.size;
  }

  version(name: string): string | undefined {
    if (this.over.has(name)) return versionOfHeld(this.over.get(name));
    return this.inScope(name) ? this.base.get(name)?.version : undefined;
  }

  has(name: string): boolean {
    return this.version(name) !== undefined;
  }

  set(name: string, held: VersionedResource | string): void {
    if (typeof held !== 'string' && this.base.get(name) === held) this.over.delete(name);
    else this.over.set(name, held);
  }

  /**
   * A name comes into the subscription: a base entry for it was never sent on this stream (the base is only
   * "held" within the subscription), so it is marked not held unless an override already says what is.
   */
  enterScope(name: string): void {
    if (!this.over.has(name) && this.base.has(name)) this.over.set(name, null);
  }

  /** The names the base holds (to bring them into scope when the subscription becomes a wildcard). */
  baseNames(): IterableIterator<string> {
    return this.base.keys();
  }

  delete(name: string): void {
    if (this.base.has(name)) this.over.set(name, null);
    else this.over.delete(name);
  }

  /** Every held name and version (subscription-filtered base entries, then overrides). */
  *entries(): IterableIterator<[string, string]> {
    for (const [name, r] of this.base) if (!this.over.has(name) && this.inScope(name)) yield [name, r.version];
    for (const [name, h] of this.over) {
      const v = versionOfHeld(h);
      if (v !== undefined) yield [name, v];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  /**
   * Moves the base to `map` when the overrides have grown past `limit`, keeping as overrides only what differs
   * from `map` within the subscription. Costs O(overrides + names that differ between the two maps): that list is
   * computed once per pair of maps and shared by every stream re-basing the same way (all of them, usually).
   */
  compact(map: ResourcesByName, limit: number): void {
    if (this.over.size <= limit || map === this.base) return;
    const next = new Map<string, Held>();
    for (const [name, h] of this.over) {
      const r = map.get(name);
      if (h === null ? r !== undefined : versionOfHeld(h) !== r?.version) next.set(name, h);
    }
    for (const name of changedBetween(this.base, map)) {
      if (this.over.has(name) || !this.inScope(name)) continue;
      next.set(name, this.base.get(name) ?? null);
    }
    this.base = map;
    this.over = next;
  }
}

const diffs = new WeakMap<ResourcesByName, { readonly to: ResourcesByName; readonly names: readonly string[] }>();

/** Names whose version differs between two maps (or that only one has); the last answer per `from` is kept. */
export function changedBetween(from: ResourcesByName, to: ResourcesByName): readonly string[] {
  const hit = diffs.get(from);
  if (hit?.to === to) return hit.names;
  const names: string[] = [];
  for (const [name, r] of from) if (to.get(name)?.version !== r.version) names.push(name);
  for (const name of to.keys()) if (!from.has(name)) names.push(name);
  diffs.set(from, { to, names });
  return names;
}
