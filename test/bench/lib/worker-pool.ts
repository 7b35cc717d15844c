// The driver's side of the load-generator processes: spreads proxies over them and gathers their measurements.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type ClientKind, type ProxyCounters, type XdsMode, newCounters } from './ads-client.ts';
import type { Marker } from './change-tracker.ts';
import type { FromWorker, ProxySpec, ToWorker } from './proxy-worker.ts';

const WORKER = fileURLToPath(new URL('./proxy-worker.ts', import.meta.url));

/** Load generators still running: killed when the driver exits, however it exits. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

interface Worker {
  readonly child: ChildProcess;
  size: number;
  synced: number;
  readonly complete: Set<number>;
  readonly waiters: ((msg: FromWorker) => boolean)[];
  exited: boolean;
}

export interface PoolOptions {
  readonly workers: number;
  /** `taskset -c` CPU list for the workers (undefined: no pinning). */
  readonly cpus?: string;
  readonly onError?: (message: string) => void;
}

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly onError: (message: string) => void;
  errors = 0;

  constructor(options: PoolOptions) {
    this.onError = options.onError ?? ((m) => process.stderr.write(`${m}\n`));
    for (let i = 0; i < options.workers; i++) {
      const args = ['--max-old-space-size=4096', ...(process.env.SKEIN_BENCH_WORKER_FLAGS ?? '').split(' ').filter(Boolean), WORKER];
      const [command, argv] = options.cpus
        ? ['taskset', ['-c', options.cpus, process.execPath, ...args]]
        : [process.execPath, args];
      const child = spawn(command as string, argv as string[], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        serialization: 'advanced',
      });
      const w: Worker = { child, size: 0, synced: 0, complete: new Set(), waiters: [], exited: false };
      child.on('message', (msg: FromWorker) => this.onMessage(w, msg));
      live.add(child);
      child.on('exit', () => {
        w.exited = true;
        live.delete(child);
      });
      this.workers.push(w);
    }
  }

  private onMessage(w: Worker, msg: FromWorker): void {
    if (msg.type === 'synced') w.synced = msg.count;
    else if (msg.type === 'complete') w.complete.add(msg.id);
    else if (msg.type === 'error') {
      this.errors = Math.max(this.errors, msg.total);
      this.onError(`proxy ${msg.slot}: ${msg.message} (${msg.total} errors in that worker)`);
    }
    for (let i = 0; i < w.waiters.length; i++) {
      if (w.waiters[i]?.(msg)) w.waiters.splice(i--, 1);
    }
  }

  private request<T extends FromWorker>(w: Worker, msg: ToWorker, match: (m: FromWorker) => m is T): Promise<T> {
    return new Promise((resolve, reject) => {
      if (w.exited) {
        reject(new Error('load-generator worker exited'));
        return;
      }
      w.waiters.push((m) => {
        if (!match(m)) return false;
        resolve(m);
        return true;
      });
      w.child.send(msg);
    });
  }

  /** Starts the proxies, spread round-robin over the workers; resolves when all are synced or on timeout. */
  async start(address: string, mode: XdsMode, client: ClientKind, specs: readonly ProxySpec[], timeoutMs: number,
    progress?: (synced: number) => void, vhds = true): Promise<number> {
    const shares: ProxySpec[][] = this.workers.map(() => []);
    specs.forEach((s, i) => shares[i % shares.length]?.push(s));
    this.workers.forEach((w, i) => {
      w.size = shares[i]?.length ?? 0;
      w.child.send({ type: 'start', address, mode, client, vhds, proxies: shares[i] ?? [], maxConnecting: 25 } satisfies ToWorker);
    });
    const deadline = Date.now() + timeoutMs;
    let last = -1;
    for (;;) {
      const synced = this.synced();
      if (synced !== last) progress?.(synced);
      last = synced;
      if (synced >= specs.length || Date.now() > deadline || this.workers.some((w) => w.exited)) return synced;
      await sleep(100);
    }
  }

  synced(): number {
    return this.workers.reduce((n, w) => n + w.synced, 0);
  }

  /** Tells every worker to watch for these markers; resolves once all have armed (before the file is written). */
  async expect(id: number, markers: Marker[]): Promise<void> {
    await Promise.all(
      this.workers.map((w) =>
        this.request(w, { type: 'expect', id, markers }, (m): m is FromWorker => m.type === 'expect-ok' && m.id === id),
      ),
    );
  }

  /** Waits until every proxy has ACKed every id, or the timeout; returns whether all completed. */
  async waitComplete(ids: readonly number[], timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const done = this.workers.every((w) => w.size === 0 || ids.every((id) => w.complete.has(id)));
      if (done) return true;
      if (Date.now() > deadline || this.workers.some((w) => w.exited)) return false;
      await sleep(5);
    }
  }

  /** Per-proxy received and ACK times (monotonic ms, NaN where not seen) for one expectation, then forgets it. */
  async collect(id: number): Promise<{ receivedAt: number[]; ackedAt: number[] }> {
    const parts = await Promise.all(
      this.workers.map((w) =>
        this.request(w, { type: 'collect', id }, (m): m is Extract<FromWorker, { type: 'result' }> =>
          m.type === 'result' && m.id === id),
      ),
    );
    for (const w of this.workers) {
      w.child.send({ type: 'forget', id } satisfies ToWorker);
      w.complete.delete(id);
    }
    return { receivedAt: parts.flatMap((p) => p.receivedAt), ackedAt: parts.flatMap((p) => p.ackedAt) };
  }

  async counters(): Promise<ProxyCounters> {
    const parts = await Promise.all(
      this.workers.map((w) =>
        this.request(w, { type: 'counters' }, (m): m is Extract<FromWorker, { type: 'counters' }> =>
          m.type === 'counters'),
      ),
    );
    const total = newCounters();
    for (const p of parts) {
      for (const k of Object.keys(total) as (keyof ProxyCounters)[]) total[k] += p.counters[k];
    }
    return total;
  }

  /** Stops every worker (SIGKILL after 3 s); resolves when all have exited. */
  async stop(): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        if (w.exited) return;
        const exited = new Promise((r) => w.child.once('exit', r));
        try {
          w.child.send({ type: 'stop' } satisfies ToWorker);
        } catch {
          // channel already closed
        }
        const timer = setTimeout(() => w.child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
