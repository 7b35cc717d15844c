// Prometheus metrics of the xDS server, in their own prom-client Registry (never the global one).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type XdsMode = 'sotw' | 'delta';

export interface XdsMetrics {
  readonly registry: Registry;
  /** Open ADS streams that sent their node, plus nodes with per-type streams (CDS, EDS, LDS, RDS), once per node. */
  readonly connectedProxies: Gauge;
  readonly pushes: Counter<'type'>;
  readonly nacks: Counter<'type'>;
  /** Requests that could not be read (each ends its stream), by reason: malformed, too_large. */
  readonly rejectedRequests: Counter<'reason'>;
  /** Bytes of resource payloads (the encoded Any values) sent, per type and protocol variant. */
  readonly bytesSent: Counter<'type' | 'mode'>;
  /** From snapshot.changedAt (the registry change) to the ACK of the response that carried it. */
  readonly convergence: Histogram;
  /**
   * Counts one response sent (pushes and bytesSent). Kept in plain numbers and added to the two counters when they
   * are read (a scrape): a 1000-proxy push made 2000 labelled increments, each hashing its labels.
   */
  countSent(type: string, mode: XdsMode, bytes: number): void;
}

interface SentCounts {
  pushes: number;
  sotw: number;
  delta: number;
}

export function createXdsMetrics(): XdsMetrics {
  const registry = new Registry();
  const pending = new Map<string, SentCounts>();
  /** Moves the counts kept since the last read into the counters (run by either counter's collect). */
  const settle = (): void => {
    for (const [type, c] of pending) {
      if (c.pushes > 0) metrics.pushes.inc({ type }, c.pushes);
      if (c.sotw > 0) metrics.bytesSent.inc({ type, mode: 'sotw' }, c.sotw);
      if (c.delta > 0) metrics.bytesSent.inc({ type, mode: 'delta' }, c.delta);
      c.pushes = c.sotw = c.delta = 0;
    }
  };
  const metrics: XdsMetrics = {
    registry,
    connectedProxies: new Gauge({
      name: 'skein_xds_connected_proxies',
      help: 'Connected proxies: ADS streams currently open, plus node ids with per-type (CDS/EDS/LDS/RDS) streams open, counted once per node',
      registers: [registry],
    }),
    pushes: new Counter({
      name: 'skein_xds_pushes_total',
      help: 'xDS responses sent, by type (CDS, EDS, LDS, RDS, VHDS)',
      labelNames: ['type'],
      registers: [registry],
      collect: settle,
    }),
    nacks: new Counter({
      name: 'skein_xds_nacks_total',
      help: 'xDS responses rejected by proxies (NACK), by type',
      labelNames: ['type'],
      registers: [registry],
    }),
    rejectedRequests: new Counter({
      name: 'skein_xds_rejected_requests_total',
      help: 'ADS requests that could not be read or used, by reason (malformed protobuf, too_large: over the receive limit, no_node: a first request without node.id, wrong_type: a per-type stream asked for another type); each ends its stream',
      labelNames: ['reason'],
      registers: [registry],
    }),
    bytesSent: new Counter({
      name: 'skein_xds_bytes_sent_total',
      help: 'Bytes of encoded resources sent, by type and mode (sotw or delta)',
      labelNames: ['type', 'mode'],
      registers: [registry],
      collect: settle,
    }),
    convergence: new Histogram({
      name: 'skein_xds_push_convergence_seconds',
      help: 'Time from a registry change to the ACK of the xDS response that carried it',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    countSent(type, mode, bytes) {
      let c = pending.get(type);
      if (!c) pending.set(type, (c = { pushes: 0, sotw: 0, delta: 0 }));
      c.pushes += 1;
      c[mode] += bytes;
    },
  };
  return metrics;
}
