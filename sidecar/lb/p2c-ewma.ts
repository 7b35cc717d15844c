// Power of two choices on peak-EWMA latency × (in flight + 1), Linkerd's default balancer and ours; weights honoured.
import type { LbEndpoint, PickContext, Picker, PickerOptions } from './picker.ts';
import { WeightedRandomBase } from './picker.ts';

export class P2cEwmaPicker<E extends LbEndpoint> extends WeightedRandomBase<E> implements Picker<E> {
  readonly policy = 'p2c-ewma' as const;

  pick(_ctx: PickContext): E | undefined {
    const n = this.endpoints.length;
    if (n === 1) return this.endpoints[0];
    const i = this.draw();
    let j = this.draw();
    // Two distinct candidates: with weights, a second draw can repeat; fall back to the neighbour.
    if (j === i) j = i + 1 === n ? 0 : i + 1;
    const a = this.endpoints[i] as E;
    const b = this.endpoints[j] as E;
    const aOut = a.load.ejected;
    const bOut = b.load.ejected;
    if (aOut !== bOut) return aOut ? b : a;
    if (aOut && bOut) return this.bestLive() ?? cheaper(a, b);
    return cheaper(a, b);
  }

  /**
   * Both draws were ejected: the cheapest endpoint that is not, if any (Envoy and Linkerd take ejected hosts out of
   * the choice). When all are ejected, the caller balances over them as usual (Envoy's panic mode).
   */
  private bestLive(): E | undefined {
    let best: E | undefined;
    let bestCost = Infinity;
    for (const e of this.endpoints) {
      if (e.load.ejected) continue;
      const c = e.load.cost() / e.weight;
      if (c < bestCost) [best, bestCost] = [e, c];
    }
    return best;
  }
}

/** Weight divides cost: an endpoint with twice the weight is worth twice the load. */
function cheaper<E extends LbEndpoint>(a: E, b: E): E {
  return a.load.cost() / a.weight <= b.load.cost() / b.weight ? a : b;
}

export function p2cEwma<E extends LbEndpoint>(healthy: readonly E[], options: PickerOptions): Picker<E> {
  return new P2cEwmaPicker(healthy, options);
}
