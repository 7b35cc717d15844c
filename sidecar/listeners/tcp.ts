// Opaque TCP service listeners: bind each on the sidecar's own outbound host at the Service port, pipe to an endpoint.
import net from 'node:net';
import { upstreamError } from '../upstream/index.ts';
import type { ClusterManager } from '../upstream/index.ts';
import type { DataPlaneMetrics } from '../telemetry/metrics.ts';
import type { TcpListenerConfig } from '../xds/model.ts';
import { logger } from '../log.ts';
import { ListenerBindError, LocalReplyError } from './errors.ts';
import { affinityKey } from './affinity-key.ts';
import { lingerAfterUpstream } from './linger.ts';
import { setIdleTimeout } from './socket-timeout.ts';

const log = logger('listener');

export interface TcpListenerStat {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly cluster: string;
  readonly bound: boolean;
  readonly error: string | undefined;
  readonly connections: number;
  /** Other Services' TCP listeners on the same port, which this one shadows (see TcpListeners.update). */
  readonly shadowed: readonly string[];
}

class TcpServiceListener {
  config: TcpListenerConfig;
  readonly server: net.Server;
  bound = false;
  error: string | undefined;
  readonly conns = new Set<net.Socket>();
  private readonly host: string;
  private readonly podIp: string | undefined;
  private readonly metrics: DataPlaneMetrics;
  /** A listen() under way, or the timer of the next try after a failed bind. */
  private binding = false;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(config: TcpListenerConfig, host: string, manager: ClusterManager, metrics: DataPlaneMetrics, podIp?: string) {
    this.config = config;
    this.host = host;
    this.podIp = podIp;
    this.metrics = metrics;
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true, allowHalfOpen: true }, (client) => this.accept(client, manager, metrics));
    this.server.on('error', (err) => {
      this.bound = false;
      const e = new ListenerBindError(this.config.name, host, this.config.port, err);
      if (this.error !== e.message) log.warn(e.message, { code: e.code, retryInMs: BIND_RETRY_MS });
      this.error = e.message;
      metrics.listenerBindFailures.labels(this.config.name).set(1);
    });
  }

  /**
   * Binds; a failure (the port in use, often by the pod's own app or a previous process) is tried again every
   * BIND_RETRY_MS and on every config update that still names the listener, as Envoy binds a listener that failed
   * anew on the next LDS update.
   */
  listen(): Promise<void> {
    if (this.bound || this.binding || this.closed) return Promise.resolve();
    this.binding = true;
    clearTimeout(this.retry);
    return new Promise((resolve) => {
      const failed = (): void => {
        this.binding = false;
        if (!this.closed) this.retry = setTimeout(() => void this.listen(), BIND_RETRY_MS).unref();
        resolve();
      };
      this.server.once('error', failed);
      this.server.listen(this.config.port, this.host, () => {
        this.server.off('error', failed);
        this.binding = false;
        this.bound = true;
        if (this.error !== undefined) log.info('TCP listener bound after all', { listener: this.config.name, port: this.config.port });
        this.error = undefined;
        this.metrics.listenerBindFailures.labels(this.config.name).set(0);
        resolve();
      });
    });
  }

  /** When a client connection last came or went (performance.now()): the shutdown wait reads it. */
  lastConnectionAt = Number.NEGATIVE_INFINITY;

  private accept(client: net.Socket, manager: ClusterManager, metrics: DataPlaneMetrics): void {
    this.lastConnectionAt = performance.now();
    const clusterName = this.config.cluster;
    const chosen = manager.choose(clusterName, this.config.hashSourceIp === true ? affinityKey(client.remoteAddress, this.podIp) : undefined);
    if (chosen instanceof LocalReplyError) {
      metrics.localError(chosen.reason);
      log.warn('TCP connection closed', { listener: this.config.name, cluster: clusterName, reason: chosen.message });
      client.destroy();
      return;
    }
    const ep = chosen.endpoint;
    this.conns.add(client);
    const counted = metrics.tcp.callerSocket('outbound', clusterName, client);
    // The pool this stream counts in: the endpoint may get a new one meanwhile (its expected identities changed).
    const pool = ep.pool;
    const upstream = pool.openStream();
    const startedAt = ep.load.start();
    let released = false;
    let failed = false;
    const done = (): void => {
      if (released) return;
      released = true;
      this.conns.delete(client);
      this.lastConnectionAt = performance.now();
      ep.load.endStream(failed, startedAt);
      pool.release();
      counted();
      client.destroy();
      upstream.destroy();
    };
    // The upstream closed or reset after answering (an app's early answer to an upload it will not read): the answer,
    // then a FIN, reaches the client, whose remaining bytes are dropped (see lingerAfterUpstream).
    const afterUpstream = lingerAfterUpstream(client, upstream, done);
    client.on('error', done);
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      failed = true;
      // A connection that never came up (refused, timed out, TLS handshake failed) or one reset after it did.
      const reason = upstreamError(err, ep.pool.dialTarget).reason;
      metrics.localError(reason);
      log.debug('TCP upstream error', { listener: this.config.name, target: ep.pool.dialTarget, code: err.code, reason });
      afterUpstream();
    });
    client.on('close', done);
    upstream.on('close', afterUpstream);
    if (this.config.idleTimeoutMs !== undefined && this.config.idleTimeoutMs > 0) {
      // Decided after the turn's I/O (setIdleTimeout): bytes either way that came while the process was held count.
      setIdleTimeout(client, this.config.idleTimeoutMs, done);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.metrics.listenerBindFailures.remove(this.config.name);
    this.server.close();
  }

  /** The listener's config changed in place; a new name (the Service's virtual IP changed) takes over the gauge. */
  retarget(c: TcpListenerConfig): void {
    if (c.name !== this.config.name) {
      const failing = this.error !== undefined;
      this.metrics.listenerBindFailures.remove(this.config.name);
      if (failing) this.metrics.listenerBindFailures.labels(c.name).set(1);
    }
    this.config = c;
  }
}

/** How often a TCP listener whose port was taken tries to bind again. */
const BIND_RETRY_MS = 5000;

/** The set of TCP service listeners, kept in step with config; bind failures are reported, never fatal. */
export class TcpListeners {
  private readonly host: string;
  private readonly manager: ClusterManager;
  private readonly metrics: DataPlaneMetrics;
  private readonly listeners = new Map<string, TcpServiceListener>();
  /** Removed listeners whose connections are still open. */
  private readonly retired = new Set<TcpServiceListener>();
  private readonly podIp: string | undefined;
  private readonly namespace: string | undefined;
  /** Per port, the Services it shadows (as last warned about). */
  private readonly shadows = new Map<string, readonly string[]>();

  /**
   * `podIp`: the key a sessionAffinity: ClientIP Service hashes on when the app connects over loopback.
   * `namespace`: the pod's, whose Services win a port that Services of several namespaces declare.
   */
  /** The pod's own app ports, never bound here (the app's restart would find its port taken). */
  private readonly appPorts: ReadonlySet<number>;
  private readonly appPortNoted = new Set<string>();

  constructor(host: string, manager: ClusterManager, metrics: DataPlaneMetrics, podIp?: string, namespace?: string, appPorts: readonly number[] = []) {
    this.appPorts = new Set(appPorts);
    this.host = host;
    this.manager = manager;
    this.metrics = metrics;
    this.podIp = podIp;
    this.namespace = namespace;
  }

  /**
   * Binds new listeners, closes removed ones (their connections continue), re-targets changed ones. Without traffic
   * interception the sidecar listens once per port on its own address, so when several TCP Services share a port
   * number (each on its own virtual IP in the cluster) one of them gets it, the same one every time: a Service of
   * this pod's namespace first, then by name. The others are named in a warning and in /config_dump.
   */
  async update(configs: readonly TcpListenerConfig[]): Promise<void> {
    const byPort = new Map<string, TcpListenerConfig[]>();
    for (const c of configs) {
      const list = byPort.get(`${c.port}`);
      if (list === undefined) byPort.set(`${c.port}`, [c]);
      else list.push(c);
    }
    const seen = new Set<string>();
    const binding: Promise<void>[] = [];
    for (const [key, list] of byPort) {
      // The pod's own app port: the app holds it (or will again after a restart); a listener there would take it.
      if (this.appPorts.has(Number(key))) {
        if (!this.appPortNoted.has(key)) log.info(`TCP port ${key} is this pod's own app port: no outbound listener there`, { port: Number(key), cluster: list[0]?.cluster });
        this.appPortNoted.add(key);
        continue;
      }
      seen.add(key);
      const ranked = list.length === 1 ? list : [...list].sort((a, b) => this.rank(a) - this.rank(b) || (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0));
      const c = ranked[0] as TcpListenerConfig;
      this.noteShadows(key, c, ranked.slice(1));
      const l = this.listeners.get(key);
      if (l !== undefined) {
        l.retarget(c);
        if (!l.bound) binding.push(l.listen());
        continue;
      }
      const nl = new TcpServiceListener(c, this.host, this.manager, this.metrics, this.podIp);
      this.listeners.set(key, nl);
      binding.push(nl.listen());
    }
    for (const [key, l] of this.listeners) {
      if (seen.has(key)) continue;
      l.close();
      this.listeners.delete(key);
      // Its connections go on (as Envoy drains a removed listener's); they still count, and end, at shutdown.
      if (l.conns.size > 0) this.retired.add(l);
    }
    for (const l of this.retired) if (l.conns.size === 0) this.retired.delete(l);
    for (const key of this.shadows.keys()) if (!seen.has(key)) this.shadows.delete(key);
    await Promise.all(binding);
  }

  /** 0 for a Service of this pod's namespace, else 1 (its cluster is `outbound|<port>||<name>.<ns>.svc...`). */
  private rank(c: TcpListenerConfig): number {
    const host = c.cluster.slice(c.cluster.lastIndexOf('|') + 1);
    return this.namespace !== undefined && host.split('.')[1] === this.namespace ? 0 : 1;
  }

  private noteShadows(key: string, winner: TcpListenerConfig, losers: readonly TcpListenerConfig[]): void {
    const names = losers.map((l) => l.cluster);
    const before = this.shadows.get(key) ?? [];
    if (names.length === 0) {
      this.shadows.delete(key);
      return;
    }
    this.shadows.set(key, names);
    if (before.length === names.length && before.every((n, i) => n === names[i])) return;
    log.warn(`TCP port ${key} is declared by several Services; without traffic interception this sidecar listens once per port, so it goes to ${winner.cluster}`, {
      port: Number(key),
      cluster: winner.cluster,
      shadowed: names,
      hint: 'a Service of this pod\'s namespace wins, then by name; give the others distinct port numbers to reach them through this sidecar',
    });
  }

  stats(): TcpListenerStat[] {
    return [...this.listeners.values()].map((l) => ({
      name: l.config.name,
      address: this.host,
      port: l.config.port,
      cluster: l.config.cluster,
      bound: l.bound,
      error: l.error,
      connections: l.conns.size,
      shadowed: this.shadows.get(`${l.config.port}`) ?? [],
    }));
  }

  /** When a client connection of any TCP listener last came or went (performance.now()). */
  get lastConnectionAt(): number {
    let t = Number.NEGATIVE_INFINITY;
    for (const l of this.all()) if (l.lastConnectionAt > t) t = l.lastConnectionAt;
    return t;
  }

  /** Client connections open now, over every TCP listener (removed ones' included). */
  get connections(): number {
    let n = 0;
    for (const l of this.all()) n += l.conns.size;
    return n;
  }

  private all(): TcpServiceListener[] {
    return [...this.listeners.values(), ...this.retired];
  }

  async close(drainMs: number): Promise<void> {
    const all = this.all();
    this.retired.clear();
    this.listeners.clear();
    for (const l of all) l.close();
    const open = (): number => all.reduce((n, l) => n + l.conns.size, 0);
    const deadline = Date.now() + drainMs;
    while (open() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const l of all) for (const c of l.conns) c.destroy();
  }
}
