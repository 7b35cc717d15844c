// The xDS server's interface for the rest of the control plane: start it, read its status and metrics.
export { startXdsServer, type XdsServerHandle, type XdsServerOptions } from './server.ts';
export {
  type DeliveryState,
  type NackRecord,
  type ProxyStatus,
  type ResourceStatus,
  StatusRegistry,
  type StatusQuery,
  type TypeStatus,
  type XdsService,
} from './status.ts';
export { createXdsMetrics, type XdsMetrics, type XdsMode } from './metrics.ts';
export { XdsBindError } from './errors.ts';
export { stderrLog, type XdsLog } from './log.ts';
