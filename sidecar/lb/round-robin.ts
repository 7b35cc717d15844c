// Weighted round robin: a precomputed smooth-WRR schedule (nginx's interleaving), started at a random offset.
import type { LbEndpoint, PickContext, Picker, PickerOptions } from './picker.ts';
import { WeightTable } from './picker.ts';

/** Above this schedule length, weights are honoured by weighted random choice instead. */
const MAX_SCHEDULE = 4096;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Smooth weighted round robin order over integer weights (each index appears weight/g times, interleaved). */
export function smoothSchedule(weights: readonly number[]): number[] | undefined {
  const ints = weights.map((w) => Math.max(1, Math.round(w)));
  const g = ints.reduce(gcd);
  const reduced = ints.map((w) => w / g);
  const total = reduced.reduce((a, b) => a + b, 0);
  if (total > MAX_SCHEDULE) return undefined;
  const current = new Array<number>(reduced.length).fill(0);
  const order: number[] = [];
  for (let n = 0; n < total; n++) {
    let best = 0;
    for (let i = 0; i < reduced.length; i++) {
      current[i] = (current[i] as number) + (reduced[i] as number);
      if ((current[i] as number) > (current[best] as number)) best = i;
    }
    current[best] = (current[best] as number) - total;
    order.push(best);
  }
  return order;
}

export class RoundRobinPicker<E extends LbEndpoint> implements Picker<E> {
  readonly policy = 'round-robin' as const;
  private readonly endpoints: readonly E[];
  private readonly schedule: Uint32Array | undefined;
  private readonly table: WeightTable | undefined;
  private readonly random: () => number;
  private next: number;

  constructor(endpoints: readonly E[], options: PickerOptions) {
    this.endpoints = endpoints;
    this.random = options.random ?? Math.random;
    const order = smoothSchedule(endpoints.map((e) => e.weight));
    this.schedule = order === undefined ? undefined : Uint32Array.from(order);
    this.table = order === undefined ? new WeightTable(endpoints.map((e) => e.weight)) : undefined;
    this.next = this.schedule === undefined ? 0 : Math.floor(this.random() * this.schedule.length);
  }

  pick(_ctx: PickContext): E | undefined {
    if (this.schedule !== undefined) {
      const i = this.schedule[this.next] as number;
      this.next = this.next + 1 === this.schedule.length ? 0 : this.next + 1;
      return this.endpoints[i];
    }
    return this.endpoints[(this.table as WeightTable).index(this.random())];
  }
}

export function roundRobin<E extends LbEndpoint>(healthy: readonly E[], options: PickerOptions): Picker<E> {
  return new RoundRobinPicker(healthy, options);
}
