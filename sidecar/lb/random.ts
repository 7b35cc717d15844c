// Weighted random choice: each healthy endpoint with probability weight / total.
import type { LbEndpoint, PickContext, Picker, PickerOptions } from './picker.ts';
import { WeightedRandomBase } from './picker.ts';

export class RandomPicker<E extends LbEndpoint> extends WeightedRandomBase<E> implements Picker<E> {
  readonly policy = 'random' as const;

  pick(_ctx: PickContext): E | undefined {
    return this.endpoints[this.draw()];
  }
}

export function random<E extends LbEndpoint>(healthy: readonly E[], options: PickerOptions): Picker<E> {
  return new RandomPicker(healthy, options);
}
