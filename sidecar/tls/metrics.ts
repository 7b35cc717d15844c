// Certificate metrics: the leaf's expiry time, read from the workload identity whenever Prometheus scrapes.
import { Gauge, type Registry } from '../telemetry/prom.ts';

export interface ExpirySource {
  /** Seconds since the epoch; 0 before the first certificate. */
  expiryTimestampSeconds(): number;
}

/** Registers skein_sidecar_cert_expiry_timestamp_seconds in `registry`, reading `source` on each scrape. */
export function registerCertificateMetrics(registry: Registry, source: ExpirySource): Gauge {
  return new Gauge({
    name: 'skein_sidecar_cert_expiry_timestamp_seconds',
    help: 'When the workload certificate expires (seconds since the epoch); alert when it nears time() without rotating.',
    registers: [registry],
    collect() {
      this.set(source.expiryTimestampSeconds());
    },
  });
}
