// The load-balancing seam: an immutable picker per endpoint set, and a name → factory registry (grpc-js style).
import type { EndpointHealth, LbPolicyName } from '../xds/model.ts';
import { UnknownLbPolicyError } from '../listeners/errors.ts';
import type { EndpointLoad } from './load.ts';

/** What a picker needs from an endpoint; upstream's Endpoint objects implement it and are handed back by pick(). */
export interface LbEndpoint {
  /** `address:port`, stable across updates. */
  readonly key: string;
  readonly weight: number;
  readonly health: EndpointHealth;
  /** Live load stats (in-flight count, peak-EWMA latency), shared across pickers for this endpoint. */
  readonly load: EndpointLoad;
}

/** Per-request input to a pick. Reused by callers; do not keep it. */
export interface PickContext {
  /** The value of the route's hash header (ring-hash), if any. */
  hash: string | undefined;
}

export interface Picker<E extends LbEndpoint = LbEndpoint> {
  readonly policy: LbPolicyName;
  /** Synchronous, never waits; undefined when no endpoint can take the request. */
  pick(ctx: PickContext): E | undefined;
}

export interface PickerOptions {
  /** Random source in [0, 1); tests inject a deterministic one. */
  readonly random?: () => number;
}

/** Builds a picker over the healthy endpoints; returns undefined when none is healthy. */
export type PickerFactory = <E extends LbEndpoint>(
  healthy: readonly E[],
  options: PickerOptions,
) => Picker<E> | undefined;

const factories = new Map<LbPolicyName, PickerFactory>();

export function registerPicker(name: LbPolicyName, factory: PickerFactory): void {
  factories.set(name, factory);
}

export function registeredPolicies(): string[] {
  return [...factories.keys()];
}

/**
 * Publishes a new picker for an endpoint set: healthy endpoints get new requests, draining and unhealthy ones do not.
 * When none is healthy, the draining ones (Kubernetes: terminating but still serving) take them, as kube-proxy falls
 * back to serving-terminating endpoints and Envoy's panic mode does: a one-replica Deployment shutting down keeps
 * answering. Undefined when none is healthy or draining.
 */
export function buildPicker<E extends LbEndpoint>(
  policy: LbPolicyName,
  endpoints: readonly E[],
  options: PickerOptions = {},
): Picker<E> | undefined {
  const factory = factories.get(policy);
  if (factory === undefined) throw new UnknownLbPolicyError(policy, registeredPolicies());
  const takes = (e: E) => e.health === 'healthy' && e.weight > 0;
  // Usually every endpoint is healthy: the caller's array then serves as is (no second list per cluster).
  let chosen = endpoints.every(takes) ? endpoints : endpoints.filter(takes);
  if (chosen.length === 0) chosen = endpoints.filter((e) => e.health === 'draining' && e.weight > 0);
  if (chosen.length === 0) return undefined;
  return factory(chosen, options);
}

const EMPTY = new Float64Array(0);

/** Cumulative weights for weighted random choice; `total` is their sum. */
export class WeightTable {
  /** Empty when every weight is the same (the common case: no typed array per picker then). */
  readonly cumulative: Float64Array;
  readonly total: number;
  readonly uniform: boolean;
  private readonly n: number;
  constructor(weights: readonly number[]) {
    const n = weights.length;
    const first = weights[0];
    const uniform = weights.every((w) => w === first);
    let total = 0;
    for (const w of weights) total += w;
    this.n = n;
    this.total = total;
    this.uniform = uniform;
    this.cumulative = uniform ? EMPTY : new Float64Array(n);
    if (!uniform) {
      let sum = 0;
      for (let i = 0; i < n; i++) this.cumulative[i] = sum += weights[i] as number;
    }
  }

  /** Index chosen with probability weight/total, given r in [0, 1). */
  index(r: number): number {
    const n = this.n;
    if (this.uniform) return Math.min(n - 1, Math.floor(r * n));
    const x = r * this.total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.cumulative[mid] as number) > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** What the weighted-random pickers share: the endpoints, their cumulative weights, and a random source. */
export abstract class WeightedRandomBase<E extends LbEndpoint> {
  protected readonly endpoints: readonly E[];
  protected readonly table: WeightTable;
  protected readonly random: () => number;

  constructor(endpoints: readonly E[], options: PickerOptions) {
    this.endpoints = endpoints;
    this.table = new WeightTable(endpoints.map((e) => e.weight));
    this.random = options.random ?? Math.random;
  }

  /** One endpoint drawn with probability weight / total. */
  protected draw(): number {
    return this.table.index(this.random());
  }
}
