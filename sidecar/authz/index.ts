// The authorization folder's interface: policy evaluation and the inbound per-port policy index.
export { type Caller, type Decision, evaluate, type Operation } from './policy.ts';
export { authorize, buildInboundIndex, type InboundPolicy, NO_SERVICE, type ServicePolicy } from './inbound-index.ts';
