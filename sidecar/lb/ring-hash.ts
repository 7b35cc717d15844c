// Consistent hashing on a request header (Envoy's ring hash): replicas per endpoint in proportion to weight.
import type { LbEndpoint, PickContext, Picker, PickerOptions } from './picker.ts';
import { WeightTable } from './picker.ts';

/** Ring entries per unit of weight (ketama's 160), so a key moves only when its own endpoint leaves. */
const REPLICAS_PER_WEIGHT = 160;
/** Cap on ring entries (memory per cluster matters); above it replicas are scaled down for every endpoint. */
const MAX_RING = 65_536;

/** FNV-1a 32-bit with a murmur3 finalizer, so neighbouring keys spread over the ring. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class RingHashPicker<E extends LbEndpoint> implements Picker<E> {
  readonly policy = 'ring-hash' as const;
  private readonly endpoints: readonly E[];
  private readonly hashes: Uint32Array;
  private readonly owners: Uint32Array;
  private readonly table: WeightTable;
  private readonly random: () => number;

  constructor(endpoints: readonly E[], options: PickerOptions) {
    this.endpoints = endpoints;
    this.random = options.random ?? Math.random;
    this.table = new WeightTable(endpoints.map((e) => e.weight));
    const total = this.table.total;
    const scale = Math.min(REPLICAS_PER_WEIGHT, MAX_RING / total);
    const entries: Array<[number, number]> = [];
    endpoints.forEach((e, idx) => {
      const replicas = Math.max(1, Math.round(e.weight * scale));
      for (let r = 0; r < replicas; r++) entries.push([hash32(`${e.key}_${r}`), idx]);
    });
    entries.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    this.hashes = Uint32Array.from(entries, (x) => x[0]);
    this.owners = Uint32Array.from(entries, (x) => x[1]);
  }

  /** The endpoint owning the first ring entry at or after h (wrapping). */
  lookup(h: number): E {
    const hs = this.hashes;
    let lo = 0;
    let hi = hs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((hs[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    if (lo === hs.length) lo = 0;
    return this.endpoints[this.owners[lo] as number] as E;
  }

  pick(ctx: PickContext): E | undefined {
    // No hash key (header absent): any endpoint, by weight, as Envoy does with a random hash.
    if (ctx.hash === undefined) return this.endpoints[this.table.index(this.random())];
    return this.lookup(hash32(ctx.hash));
  }
}

export function ringHash<E extends LbEndpoint>(healthy: readonly E[], options: PickerOptions): Picker<E> {
  return new RingHashPicker(healthy, options);
}
