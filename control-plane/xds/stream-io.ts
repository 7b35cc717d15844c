// What both ADS stream kinds share: dependencies, a backpressure-aware outbox, stream termination, small helpers.
import type * as grpc from '@grpc/grpc-js';
import { constants as http2 } from 'node:http2';
import type { ResourcesByName, ScopeResources, Snapshot, SnapshotCache } from '../cache/snapshot.ts';
import type { Node__Output, TypeUrl } from '../../proto/index.ts';
import type { XdsLog } from './log.ts';
import type { XdsMetrics } from './metrics.ts';
import type { StatusRegistry } from './status.ts';

export interface StreamLimits {
  /** A stream whose writes stay blocked this long is closed with RESOURCE_EXHAUSTED. */
  readonly backlogLimitMs: number;
  /** Bytes written but not yet flushed to the socket above which the stream stops writing and coalesces. */
  readonly maxBufferedBytes: number;
}

export interface StreamDeps {
  readonly cache: SnapshotCache;
  readonly status: StatusRegistry;
  readonly metrics: XdsMetrics;
  readonly log: XdsLog;
  readonly limits: StreamLimits;
  /** The stream learned its scope (first request): start sending it publishes. */
  register(stream: AdsStream): void;
  /** The stream ended: stop sending it publishes. */
  unregister(stream: AdsStream): void;
}

/** What the server's publish dispatcher and shutdown need from a stream. */
export interface AdsStream {
  readonly scope: string | undefined;
  onSnapshot(snapshot: Snapshot): void;
  /** Ends the stream with a status (shutdown, errors). */
  terminate(code: grpc.status, details: string): void;
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

  get writable(): boolean {
    return !this.closed && !this.waitingDrain && this.bufferedBytes < this.limits.maxBufferedBytes;
  }

  write(message: T, bytes: number): void {
    if (this.closed) return;
    this.bufferedBytes += bytes;
    const ok = this.call.write(message, () => {
      this.bufferedBytes -= bytes;
      this.check();
    });
    if (!ok && !this.waitingDrain) {
      this.waitingDrain = true;
      this.call.once('drain', () => {
        this.waitingDrain = false;
        this.check();
      });
    }
    if (!this.writable) this.armTimer();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private armTimer(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.closed && !this.writable) this.onBacklogExceeded();
    }, this.limits.backlogLimitMs);
    this.timer.unref();
  }

  private check(): void {
    if (this.closed || !this.writable) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.onWritable();
  }
}
