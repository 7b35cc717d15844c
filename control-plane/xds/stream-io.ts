// What both ADS stream kinds share: dependencies, a backpressure-aware outbox, stream termination, small helpers.
import type * as grpc from '@grpc/grpc-js';
import { constants as http2 } from 'node:http2';
import type { ResourcesByName, ScopeResources, Snapshot, SnapshotCache } from '../cache/snapshot.ts';
import type { Node__Output, TypeUrl } from '../../proto/index.ts';
import type { XdsLog } from './log.ts';
import type { XdsMetrics } from './metrics.ts';
import type { NodeStreams, PerTypeStream } from './node-streams.ts';
import type { StatusRegistry } from './status.ts';

export interface StreamLimits {
  /** A stream whose writes stay blocked this long is closed with RESOURCE_EXHAUSTED. */
  readonly backlogLimitMs: number;
  /** Bytes written but not yet flushed to the socket above which the stream stops writing and coalesces. */
  readonly maxBufferedBytes: number;
  /** Shared by every stream of a server: caps the response bytes waiting for sockets across all of them. */
  readonly budget?: SendBudget;
}

/**
 * Response bytes written to streams and not yet handed to their sockets, across a server. Each waiting response is
 * a buffer of its own (grpc-js frames a copy per stream), so 1000 proxies syncing at once would hold gigabytes;
 * over the limit, streams wait their turn (oldest first) and coalesce what changed meanwhile, as when their own
 * client is slow. A client that has not taken its bytes within PARK_AFTER_MS stops counting against the budget
 * (its own backlog limit deals with it), so slow or stuck clients cannot hold everyone else back.
 */
/** How long a response may hold the server-wide send budget before its client counts as slow. */
export const PARK_AFTER_MS = 1000;

/** A stream the budget's sweep looks at: true when it is done with (nothing unsent any more, or parked now). */
interface ParkWatch {
  parkIfSlow(now: number): boolean;
}

export class SendBudget {
  readonly limit: number;
  inFlight = 0;
  /**
   * Waiters in arrival order (from `head` on), and the ones still waiting. A queue rather than iterating a Set: a Set
   * keeps the slots of deleted entries until it shrinks, so waking from its front walked past every earlier waiter
   * again on each give(), O(n²) over a 1000-proxy push.
   */
  private queue: (() => void)[] = [];
  private head = 0;
  private readonly waiting = new Set<() => void>();
  /** Streams holding budget that may have to be parked, looked at by one sweep timer (not a timer per write). */
  private readonly watched = new Set<ParkWatch>();
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Looks at a stream holding budget every PARK_AFTER_MS / 4 until it has nothing unsent or was parked. */
  watch(stream: ParkWatch): void {
    this.watched.add(stream);
    if (this.sweepTimer) return;
    this.sweepTimer = setTimeout(this.sweep, PARK_AFTER_MS / 4);
    this.sweepTimer.unref();
  }

  private readonly sweep = (): void => {
    this.sweepTimer = undefined;
    const now = performance.now();
    for (const stream of this.watched) if (stream.parkIfSlow(now)) this.watched.delete(stream);
    if (this.watched.size > 0) {
      this.sweepTimer = setTimeout(this.sweep, PARK_AFTER_MS / 4);
      this.sweepTimer.unref();
    }
  };

  get open(): boolean {
    return this.inFlight < this.limit;
  }

  /** How many streams are waiting for room. */
  get waiters(): number {
    return this.waiting.size;
  }

  take(bytes: number): void {
    this.inFlight += bytes;
  }

  give(bytes: number): void {
    this.inFlight -= bytes;
    // Wake waiters in order while there is room; each writes (taking budget) in its own flush.
    while (this.open && this.head < this.queue.length) {
      const wake = this.queue[this.head++] as () => void;
      if (this.waiting.delete(wake)) wake(); // not cancelled meanwhile
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  wait(wake: () => void): void {
    if (this.waiting.has(wake)) return;
    this.waiting.add(wake);
    this.queue.push(wake);
  }

  cancel(wake: () => void): void {
    this.waiting.delete(wake);
  }
}

export interface StreamDeps {
  readonly cache: SnapshotCache;
  readonly status: StatusRegistry;
  readonly metrics: XdsMetrics;
  readonly log: XdsLog;
  readonly limits: StreamLimits;
  /** Per node, its per-type streams (an EDS stream waits for the node's CDS streams); absent: no such waiting. */
  readonly nodes?: NodeStreams;
  /** The stream learned its scope (first request): start sending it publishes. */
  register(stream: AdsStream): void;
  /** The stream ended: stop sending it publishes. */
  unregister(stream: AdsStream): void;
}

/** What the server's publish dispatcher and shutdown need from a stream. */
export interface AdsStream extends PerTypeStream {
  readonly scope: string | undefined;
  onSnapshot(snapshot: Snapshot): void;
  /** Ends the stream with a status (shutdown, errors); `quiet`: an expected end, traced rather than logged. */
  terminate(code: grpc.status, details: string, reset?: boolean, quiet?: boolean): void;
}

export const EMPTY_SCOPE: ScopeResources = new Map();
export const EMPTY_RESOURCES: ResourcesByName = new Map();

export function resourcesOf(scope: ScopeResources, typeUrl: TypeUrl): ResourcesByName {
  return scope.get(typeUrl) ?? EMPTY_RESOURCES;
}

let nonceCounter = 0;
const noncePrefix = Math.floor(Math.random() * 2 ** 31).toString(36);

/** A nonce unique within this process run (and unlikely to repeat across restarts). */
export function newNonce(): string {
  nonceCounter += 1;
  return `${noncePrefix}-${nonceCounter.toString(36)}`;
}

export function userAgentOf(node: Node__Output): string {
  const version = node.user_agent_version ?? '';
  return `${node.user_agent_name}${version ? `/${version}` : ''}`;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Resets the HTTP/2 stream under a grpc-js server call. A client that stopped reading has a full flow-control
 * window, so a status in trailers could never reach it; RST_STREAM with ENHANCE_YOUR_CALM frees the buffers at
 * once and grpc clients map it to RESOURCE_EXHAUSTED. grpc-js exposes no public handle for this, so the walk
 * down its call chain is defensive: when the shape differs it returns false and the caller falls back.
 */
export function resetHttp2Stream(call: object, code: number = http2.NGHTTP2_ENHANCE_YOUR_CALM): boolean {
  let node: unknown = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && node && typeof node === 'object'; depth++) {
    const stream = (node as { stream?: { close?: (code: number) => void; destroyed?: boolean } }).stream;
    if (stream && typeof stream.close === 'function') {
      if (!stream.destroyed) stream.close(code);
      return true;
    }
    node = (node as { nextCall?: unknown }).nextCall;
  }
  return false;
}

/**
 * Writes responses and tracks backpressure. While blocked the stream keeps writing nothing and coalesces its
 * pending changes (latest state per type); `onWritable` runs when writing may resume, `onBacklogExceeded`
 * when the block lasted longer than the limit.
 */
export class Outbox<T> {
  private readonly call: grpc.ServerDuplexStream<unknown, T>;
  private readonly limits: StreamLimits;
  private readonly onWritable: () => void;
  private readonly onBacklogExceeded: () => void;
  private bufferedBytes = 0;
  private waitingDrain = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private waitingBudget = false;
  /** A flush found the outbox not writable: onWritable is due once it is (and only then). */
  private wanted = false;
  /** Bytes of this stream counted in the server-wide budget (0 once parked as a slow client). */
  private counted = 0;
  /** performance.now() of the first write since the stream last had nothing unsent; -1 while it has nothing unsent. */
  private unsentSince = -1;
  /** In the budget's park sweep. */
  private watched = false;
  private readonly wake = (): void => {
    this.waitingBudget = false;
    this.check();
  };

  constructor(
    call: grpc.ServerDuplexStream<unknown, T>,
    limits: StreamLimits,
    onWritable: () => void,
    onBacklogExceeded: () => void,
  ) {
    this.call = call;
    this.limits = limits;
    this.onWritable = onWritable;
    this.onBacklogExceeded = onBacklogExceeded;
  }

  /** Whether the client keeps up (its own backlog is under the limits). */
  private get keepsUp(): boolean {
    return !this.closed && !this.waitingDrain && this.bufferedBytes < this.limits.maxBufferedBytes;
  }

  /** Whether a response may be written now: the client keeps up and the server-wide budget has room for it. */
  get writable(): boolean {
    if (!this.keepsUp) {
      this.wanted = true;
      return false;
    }
    const budget = this.limits.budget;
    if (!budget || budget.open) return true;
    this.wanted = true;
    if (!this.waitingBudget) {
      this.waitingBudget = true;
      budget.wait(this.wake);
    }
    return false;
  }

  write(message: T, bytes: number): void {
    if (this.closed) return;
    this.bufferedBytes += bytes;
    const budget = this.limits.budget;
    if (budget) {
      this.counted += bytes;
      budget.take(bytes);
      if (this.unsentSince < 0) this.unsentSince = performance.now();
      if (!this.watched) {
        this.watched = true;
        budget.watch(this);
      }
    }
    let done = false;
    const ok = this.call.write(message, () => {
      if (done || this.closed) return;
      done = true;
      this.bufferedBytes -= bytes;
      this.release(Math.min(bytes, this.counted));
      if (this.bufferedBytes === 0) this.unsentSince = -1;
      this.check();
    });
    if (!ok && !this.waitingDrain) {
      this.waitingDrain = true;
      this.call.once('drain', () => {
        this.waitingDrain = false;
        this.check();
      });
    }
    if (!this.keepsUp) this.armTimer();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waitingBudget) this.limits.budget?.cancel(this.wake);
    this.waitingBudget = false;
    // Bytes still queued on a closed stream are dropped with it: hand their budget back.
    this.release(this.counted);
  }

  private release(bytes: number): void {
    if (bytes <= 0) return;
    this.counted -= bytes;
    this.limits.budget?.give(bytes);
  }

  /**
   * The budget's sweep: after PARK_AFTER_MS (up to a quarter more) with bytes still unsent, this client stops
   * holding the shared budget; bytes written later count again, from their own write. True when the sweep is done
   * with this stream (closed, nothing unsent, or parked now).
   */
  parkIfSlow(now: number): boolean {
    if (this.closed || this.unsentSince < 0) {
      this.watched = false;
      return true;
    }
    if (now - this.unsentSince < PARK_AFTER_MS) return false;
    this.release(this.counted);
    this.unsentSince = -1;
    this.watched = false;
    return true;
  }

  private armTimer(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      // Decided after this turn's I/O (setImmediate runs after the poll phase): timers run before I/O, so after the
      // process was held past the limit (a GC pause, a long build), write completions that came meanwhile count first.
      setImmediate(() => {
        if (this.timer !== timer) return; // caught up (check) or closed meanwhile
        this.timer = undefined;
        if (!this.closed && !this.keepsUp) this.onBacklogExceeded();
      });
    }, this.limits.backlogLimitMs);
    const timer = this.timer;
    this.timer.unref();
  }

  /**
   * Runs when the client may have caught up (a write done, a drain, room in the budget): wakes the stream only if
   * a flush found the outbox blocked. Most writes complete with nothing waiting, and a wake-up per write was a
   * flush pass over every type per stream and response.
   */
  private check(): void {
    if (this.closed || !this.keepsUp) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.wanted || !this.writable) return;
    this.wanted = false;
    this.onWritable();
  }
}
