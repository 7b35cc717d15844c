// A registry the cache tests drive by hand: emit a state with its changed Services, or move to one and let diffStates name them.
import type { RegistryListener, RegistryState, ServiceKey } from '../../../control-plane/registry/registry.ts';
import { diffStates } from '../../../control-plane/registry/registry.ts';

export class FakeSource {
  current: RegistryState;
  listeners = new Set<RegistryListener>();
  constructor(state: RegistryState) {
    this.current = state;
  }
  state = () => this.current;
  subscribe = (l: RegistryListener) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };
  emit(state: RegistryState, changed: ServiceKey[], detectedAt?: number): void {
    this.current = state;
    for (const l of this.listeners) l({ state, changed: new Set(changed), ...(detectedAt !== undefined ? { detectedAt } : {}) });
  }
  /** Moves to `next`, naming the changed Services exactly as the real registries do. */
  moveTo(next: RegistryState): void {
    const changed = diffStates(this.current, next);
    this.current = next;
    for (const l of this.listeners) l({ state: next, changed });
  }
}
