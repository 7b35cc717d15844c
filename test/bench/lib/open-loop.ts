// Open-loop HTTP/1.1 load: requests on a fixed clock, latency measured from the SCHEDULED time (no coordinated omission).
import { writeFileSync } from 'node:fs';
import { type Completion, Http1Conn, requestBytes } from './http1-conn.ts';
import { percentileSorted } from './stats.ts';
import { monotonicMs } from './tail.ts';

export interface LoadTarget {
  readonly host: string;
  readonly port: number;
  /** The Host header (e.g. bench.default for the sidecar's outbound listener). */
  readonly authority: string;
  readonly path?: string;
}

export interface OpenLoopOptions extends LoadTarget {
  /** Requests per second. */
  readonly rate: number;
  readonly durationMs: number;
  /** Traffic at the same rate before measuring starts (connections warm, JIT warm); not recorded. */
  readonly warmupMs: number;
  /** Keep-alive connections opened up front; more are opened (up to maxConnections) when all are busy. */
  readonly connections: number;
  readonly maxConnections?: number;
  /**
   * Busy-poll the clock (default): sends leave within microseconds of their slot, but the generator takes its
   * whole core. false: a 1 ms timer (sends up to ~1 ms late, counted as latency) for a core shared with others.
   */
  readonly spin?: boolean;
  /** Writes every measured request there as float64 pairs (scheduled time in monotonic ms, latency in ms). */
  readonly dumpPath?: string;
}

export interface LatencySummary {
  /** Milliseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

export interface LoadResult {
  readonly mode: 'open' | 'sequential';
  /** Requests measured (completed, any status). */
  readonly count: number;
  readonly errors: number;
  readonly non2xx: number;
  /** Completed measured requests per second of measuring. */
  readonly achievedRate: number;
  /** From the scheduled time to the end of the response: what a user waiting on the clock sees. */
  readonly latency: LatencySummary;
  /** From the write on the socket to the end of the response. */
  readonly service: LatencySummary;
  /** How late the write was after its scheduled time (the generator's own lag plus queueing for a connection). */
  readonly sendLag: LatencySummary;
  readonly connectionsOpened: number;
  /** Requests that waited because every connection was busy (open mode). */
  readonly queued: number;
}

export function summarizeMs(samples: Float64Array, n: number): LatencySummary {
  const s = samples.subarray(0, n).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i] as number;
  const arr = s as unknown as readonly number[];
  return {
    p50: percentileSorted(arr, 50),
    p90: percentileSorted(arr, 90),
    p99: percentileSorted(arr, 99),
    p999: percentileSorted(arr, 99.9),
    max: n > 0 ? (s[n - 1] as number) : Number.NaN,
    mean: n > 0 ? sum / n : Number.NaN,
  };
}

class Recorder {
  readonly latency: Float64Array;
  readonly service: Float64Array;
  readonly lag: Float64Array;
  /** Scheduled time in monotonic ms (to set requests against other processes' events). */
  readonly at: Float64Array;
  n = 0;
  errors = 0;
  non2xx = 0;
  constructor(capacity: number) {
    this.latency = new Float64Array(capacity);
    this.service = new Float64Array(capacity);
    this.lag = new Float64Array(capacity);
    this.at = new Float64Array(capacity);
  }
  record(scheduled: number, sentAt: number, now: number, status: number): void {
    if (this.n >= this.latency.length) return;
    this.latency[this.n] = now - scheduled;
    this.service[this.n] = now - sentAt;
    this.lag[this.n] = sentAt - scheduled;
    this.at[this.n] = monotonicMs(scheduled);
    this.n++;
    if (status < 200 || status >= 300) this.non2xx++;
  }
}

/** Runs open-loop load; spins on setImmediate so sends leave within microseconds of their slot (own core). */
export async function runOpenLoop(o: OpenLoopOptions): Promise<LoadResult> {
  const bytes = requestBytes(o.authority, o.path);
  const maxConnections = o.maxConnections ?? Math.max(o.connections * 4, 64);
  const idle: Http1Conn[] = [];
  const all = new Set<Http1Conn>();
  let opened = 0;
  const onClose = (c: Http1Conn): void => {
    all.delete(c);
    const i = idle.indexOf(c);
    if (i >= 0) idle.splice(i, 1);
  };
  const open = (): Http1Conn => {
    const c = new Http1Conn(o.host, o.port, onClose);
    opened++;
    all.add(c);
    return c;
  };
  const initial = Array.from({ length: o.connections }, open);
  await Promise.all(initial.map((c) => c.ready));
  idle.push(...initial);

  const interval = 1000 / o.rate;
  const totalMs = o.warmupMs + o.durationMs;
  const total = Math.floor((totalMs / 1000) * o.rate);
  const warmupCount = Math.floor((o.warmupMs / 1000) * o.rate);
  const rec = new Recorder(total - warmupCount + 16);
  /** Scheduled times of requests waiting for a free connection. */
  const backlog: number[] = [];
  let backlogHead = 0;
  let queued = 0;
  let completed = 0;
  let measureStart = Number.NaN;
  let measureEnd = 0;

  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => (resolveDone = r));
  const t0 = performance.now() + 5;

  const start = (conn: Http1Conn, scheduled: number, index: number): void => {
    const sentAt = performance.now();
    conn.send(bytes, (err: Error | undefined, result: Completion | undefined) => {
      const now = performance.now();
      if (index >= warmupCount) {
        if (Number.isNaN(measureStart)) measureStart = t0 + warmupCount * interval;
        measureEnd = now;
        if (err !== undefined || result === undefined) rec.errors++;
        else rec.record(scheduled, sentAt, now, result.status);
      }
      completed++;
      if (!conn.closed) {
        if (backlogHead < backlog.length) {
          const next = backlog[backlogHead] as number;
          backlogHead++;
          start(conn, next, Math.round((next - t0) / interval));
        } else idle.push(conn);
      }
      if (completed >= total) resolveDone();
    });
  };

  let nextIndex = 0;
  const tick = (): void => {
    const now = performance.now();
    while (nextIndex < total) {
      const scheduled = t0 + nextIndex * interval;
      if (scheduled > now) break;
      const conn = idle.pop();
      if (conn !== undefined) start(conn, scheduled, nextIndex);
      else {
        queued++;
        backlog.push(scheduled);
        if (all.size < maxConnections) {
          const c = open();
          c.ready.then(
            () => {
              if (backlogHead < backlog.length) {
                const next = backlog[backlogHead] as number;
                backlogHead++;
                start(c, next, Math.round((next - t0) / interval));
              } else idle.push(c);
            },
            () => {},
          );
        }
      }
      nextIndex++;
    }
    if (nextIndex < total) {
      if (spin) setImmediate(tick);
      else setTimeout(tick, 1);
    }
  };
  const spin = o.spin ?? true;
  setImmediate(tick);
  const deadline = setTimeout(resolveDone, totalMs + 10_000);
  await done;
  clearTimeout(deadline);
  const unanswered = total - completed;
  rec.errors += Math.max(0, unanswered);
  for (const c of all) c.close();
  if (o.dumpPath !== undefined) {
    const pairs = new Float64Array(rec.n * 2);
    for (let i = 0; i < rec.n; i++) {
      pairs[2 * i] = rec.at[i] as number;
      pairs[2 * i + 1] = rec.latency[i] as number;
    }
    writeFileSync(o.dumpPath, pairs);
  }
  const measuredMs = measureEnd - measureStart;
  return {
    mode: 'open',
    count: rec.n,
    errors: rec.errors,
    non2xx: rec.non2xx,
    achievedRate: measuredMs > 0 ? (rec.n / measuredMs) * 1000 : 0,
    latency: summarizeMs(rec.latency, rec.n),
    service: summarizeMs(rec.service, rec.n),
    sendLag: summarizeMs(rec.lag, rec.n),
    connectionsOpened: opened,
    queued,
  };
}

export interface SequentialOptions extends LoadTarget {
  readonly durationMs: number;
  readonly warmupMs: number;
}

/** Closed loop on one connection, one request at a time: the latency of a lone request (concurrency 1). */
export async function runSequential(o: SequentialOptions): Promise<LoadResult> {
  const bytes = requestBytes(o.authority, o.path);
  let conn = new Http1Conn(o.host, o.port, () => {});
  let opened = 1;
  await conn.ready;
  const end = performance.now() + o.warmupMs + o.durationMs;
  const measureFrom = performance.now() + o.warmupMs;
  const rec = new Recorder(2_000_000);
  let measureStart = Number.NaN;
  let measureEnd = 0;
  for (;;) {
    const sentAt = performance.now();
    if (sentAt >= end) break;
    const result = await new Promise<Completion | undefined>((resolve) =>
      conn.send(bytes, (err, r) => resolve(err === undefined ? r : undefined)),
    );
    const now = performance.now();
    if (sentAt >= measureFrom) {
      if (Number.isNaN(measureStart)) measureStart = sentAt;
      measureEnd = now;
      if (result === undefined) rec.errors++;
      else rec.record(sentAt, sentAt, now, result.status);
    }
    if (result === undefined || conn.closed) {
      conn.close();
      conn = new Http1Conn(o.host, o.port, () => {});
      opened++;
      await conn.ready.catch(() => {});
    }
  }
  conn.close();
  const measuredMs = measureEnd - measureStart;
  return {
    mode: 'sequential',
    count: rec.n,
    errors: rec.errors,
    non2xx: rec.non2xx,
    achievedRate: measuredMs > 0 ? (rec.n / measuredMs) * 1000 : 0,
    latency: summarizeMs(rec.latency, rec.n),
    service: summarizeMs(rec.service, rec.n),
    sendLag: summarizeMs(rec.lag, rec.n),
    connectionsOpened: opened,
    queued: 0,
  };
}
