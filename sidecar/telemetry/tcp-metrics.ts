// Per-cluster metrics of connections proxied as byte streams (opaque TCP, unparsed inbound): opened, closed, bytes each way.
import type { Socket } from 'node:net';
import { Counter, type Registry } from './prom.ts';
import type { Direction } from './metrics.ts';

type CounterChild = ReturnType<Counter<string>['labels']>;

/** The four series of one (direction, cluster), made on its first connection. */
interface Series {
  readonly opened: CounterChild;
  readonly closed: CounterChild;
  readonly received: CounterChild;
  readonly sent: CounterChild;
}

/**
 * One open connection. `received` and `sent` read the socket's own byte counts (no per-chunk work on the data path);
 * what they read at the last scrape is kept, so a long-lived connection's bytes show while it is open.
 */
interface Tracked {
  readonly series: Series;
  readonly received: () => number;
  readonly sent: () => number;
  receivedSeen: number;
  sentSeen: number;
}

/**
 * skein_tcp_connections_opened_total, skein_tcp_connections_closed_total, skein_tcp_received_bytes_total and
 * skein_tcp_sent_bytes_total by direction and cluster, as Istio's istio_tcp_* metrics. Bytes are counted from the
 * caller's side of the proxy: received from the caller (towards the destination), sent back to it.
 */
export class TcpMetrics {
  private readonly opened: Counter<'direction' | 'cluster'>;
  private readonly closed: Counter<'direction' | 'cluster'>;
  private readonly receivedBytes: Counter<'direction' | 'cluster'>;
  private readonly sentBytes: Counter<'direction' | 'cluster'>;
  private readonly series: Record<Direction, Map<string, Series>> = { inbound: new Map(), outbound: new Map() };
  private readonly open = new Set<Tracked>();

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames = ['direction', 'cluster'] as const;
    const flushOpen = (): void => {
      for (const t of this.open) flushBytes(t);
    };
    this.opened = new Counter({
      name: 'skein_tcp_connections_opened_total',
      help: 'Connections the sidecar proxied as byte streams (opaque TCP; inbound connections passed to the app unparsed), opened, by direction and cluster.',
      labelNames,
      registers,
    });
    this.closed = new Counter({
      name: 'skein_tcp_connections_closed_total',
      help: 'Connections the sidecar proxied as byte streams, closed, by direction and cluster.',
      labelNames,
      registers,
    });
    this.receivedBytes = new Counter({
      name: 'skein_tcp_received_bytes_total',
      help: 'Bytes received from the caller on connections proxied as byte streams (towards the destination), by direction and cluster; open connections counted up to the scrape.',
      labelNames,
      registers,
      collect: flushOpen,
    });
    this.sentBytes = new Counter({
      name: 'skein_tcp_sent_bytes_total',
      help: 'Bytes sent back to the caller on connections proxied as byte streams, by direction and cluster; open connections counted up to the scrape.',
      labelNames,
      registers,
      collect: flushOpen,
    });
  }

  /**
   * Counts a connection from now until `close` is called (once; later calls do nothing). `received` and `sent` give
   * the bytes so far from the caller and back to it, e.g. the caller's socket's bytesRead and bytesWritten.
   */
  connection(direction: Direction, cluster: string, received: () => number, sent: () => number): () => void {
    const series = this.seriesOf(direction, cluster);
    series.opened.inc();
    const t: Tracked = { series, received, sent, receivedSeen: 0, sentSeen: 0 };
    this.open.add(t);
    return () => {
      if (!this.open.delete(t)) return;
      flushBytes(t);
      series.closed.inc();
    };
  }

  /** connection() for the caller's own socket. */
  callerSocket(direction: Direction, cluster: string, caller: Socket): () => void {
    return this.connection(
      direction,
      cluster,
      () => caller.bytesRead,
      () => caller.bytesWritten,
    );
  }

  private seriesOf(direction: Direction, cluster: string): Series {
    const byName = this.series[direction];
    let s = byName.get(cluster);
    if (s === undefined) {
      s = {
        opened: this.opened.labels(direction, cluster),
        closed: this.closed.labels(direction, cluster),
        received: this.receivedBytes.labels(direction, cluster),
        sent: this.sentBytes.labels(direction, cluster),
      };
      byName.set(cluster, s);
    }
    return s;
  }
}

/** Adds the bytes since the last flush; a socket's counts never go down, but a destroyed one may read as undefined. */
function flushBytes(t: Tracked): void {
  const r = t.received() || 0;
  const s = t.sent() || 0;
  if (r > t.receivedSeen) {
    t.series.received.inc(r - t.receivedSeen);
    t.receivedSeen = r;
  }
  if (s > t.sentSeen) {
    t.series.sent.inc(s - t.sentSeen);
    t.sentSeen = s;
  }
}
