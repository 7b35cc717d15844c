// Prometheus metrics of the sidecar's xDS client, registered on the registry the admin server exposes.
import { Counter, Gauge, type Registry } from '../telemetry/prom.ts';

export interface XdsMetrics {
  readonly connected: Gauge;
  readonly updates: Counter<'type'>;
  readonly nacks: Counter<'type'>;
  readonly reconnects: Counter;
}

export function createXdsMetrics(registry: Registry): XdsMetrics {
  return {
    connected: new Gauge({
      name: 'skein_sidecar_xds_connected',
      help: '1 while the ADS stream to the control plane is open, else 0.',
      registers: [registry],
    }),
    updates: new Counter({
      name: 'skein_sidecar_xds_updates_total',
      help: 'xDS responses accepted (ACKed), by type (CDS, EDS, LDS, RDS).',
      labelNames: ['type'],
      registers: [registry],
    }),
    nacks: new Counter({
      name: 'skein_sidecar_xds_nacks_total',
      help: 'xDS responses rejected (NACKed) because a resource failed validation, by type.',
      labelNames: ['type'],
      registers: [registry],
    }),
    reconnects: new Counter({
      name: 'skein_sidecar_xds_reconnects_total',
      help: 'ADS streams opened after the first one.',
      registers: [registry],
    }),
  };
}
