// Weighted random choice: each healthy endpoint with probability weight / total.
import type { LbEndpoint, PickContext, Picker, PickerOptions } from './picker.ts';
import { WeightTable } from './picker.ts';

export class RandomPicker<E extends LbEndpoint> implements Picker<E> {
  readonly policy = 'random' as const;
  private readonly endpoints: readonly E[];
  private readonly table: WeightTable;
  private readonly random: () => number;

  constructor(endpoints: readonly E[], options: PickerOptions) {
    this.endpoints = endpoints;
    this.table = new WeightTable(endpoints.map((e) => e.weight));
    this.random = options.random ?? Math.random;
  }

  pick(_ctx: PickContext): E | undefined {
    return this.endpoints[this.table.index(this.random())];
  }
}

export function random<E extends LbEndpoint>(healthy: readonly E[], options: PickerOptions): Picker<E> {
  return new RandomPicker(healthy, options);
}
