// The lb folder's interface: the picker seam with every built-in policy registered.
import { registerPicker } from './picker.ts';
import { roundRobin } from './round-robin.ts';
import { random } from './random.ts';
import { ringHash } from './ring-hash.ts';
import { p2cEwma } from './p2c-ewma.ts';

registerPicker('round-robin', roundRobin);
registerPicker('random', random);
registerPicker('ring-hash', ringHash);
registerPicker('p2c-ewma', p2cEwma);

export { buildPicker, registerPicker, registeredPolicies } from './picker.ts';
export type { LbEndpoint, PickContext, Picker, PickerFactory, PickerOptions } from './picker.ts';
export { EJECT_BASE_MS, EJECT_MAX_MS, EndpointLoad } from './load.ts';
export type { Clock } from './load.ts';
