// Fake endpoints and a seeded random source for picker tests (no sockets).
import { EndpointLoad } from '../../../sidecar/lb/index.ts';
import type { LbEndpoint } from '../../../sidecar/lb/index.ts';
import type { EndpointHealth } from '../../../sidecar/xds/model.ts';

export interface FakeEndpoint extends LbEndpoint {
  load: EndpointLoad;
}

export function fake(key: string, weight = 1, health: EndpointHealth = 'healthy', clock?: () => number): FakeEndpoint {
  return { key, weight, health, load: new EndpointLoad(clock ?? (() => 0)) };
}

/** Mulberry32: a small seeded PRNG so distribution checks are reproducible. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function counts(keys: Array<string | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of keys) out[k ?? 'none'] = (out[k ?? 'none'] ?? 0) + 1;
  return out;
}
