// Which task held each CPU when, during a benchmark run (perf sched): sets the slowest requests against it.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';

/** One stretch of a task on a CPU, ms on CLOCK_MONOTONIC, and how long it waited to get there (ready → running). */
export interface Slice {
  readonly cpu: number;
  readonly pid: number;
  /** The thread (= pid for a process's main thread). */
  readonly tid: number;
  readonly name: string;
  readonly start: number;
  readonly end: number;
  readonly delayMs: number;
}

/** perf is installed and may trace the scheduler here (root, or a permissive perf_event_paranoid). */
export function schedTraceAvailable(): boolean {
  try {
    execFileSync('perf', ['sched', 'record', '-k', 'CLOCK_MONOTONIC', '-o', '/dev/null', '--', 'true'], { stdio: 'ignore', timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/** `perf sched record` on every CPU until stop(); stop() returns the slices. */
export class SchedTrace {
  private readonly child: ChildProcess;
  private readonly path: string;

  private constructor(child: ChildProcess, path: string) {
    this.child = child;
    this.path = path;
  }

  static async start(path: string): Promise<SchedTrace> {
    const child = spawn('perf', ['sched', 'record', '-k', 'CLOCK_MONOTONIC', '-o', path], { stdio: ['ignore', 'ignore', 'pipe'] });
    // perf says nothing when it is ready; give it a moment to open its ring buffers.
    await new Promise((r) => setTimeout(r, 500));
    if (child.exitCode !== null) throw new Error(`perf sched record exited with ${child.exitCode}`);
    return new SchedTrace(child, path);
  }

  async stop(): Promise<Slice[]> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGINT');
    await exited;
    try {
      const text = execFileSync('perf', ['sched', 'timehist', '-i', this.path], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
      return parseTimehist(text);
    } finally {
      rmSync(this.path, { force: true });
      rmSync(`${this.path}.old`, { force: true });
    }
  }
}

// "  798.756952 [0000]  migration/0[18]   0.000   0.005   0.026": time (s) the task left the CPU, CPU, task
// name[tid] or name[tid/pid], wait time, scheduling delay, run time (ms).
const LINE = /^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.*?)\[(\d+)(?:\/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/;

export function parseTimehist(text: string): Slice[] {
  const out: Slice[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const end = Number(m[1]) * 1000;
    const run = Number(m[8]);
    out.push({ cpu: Number(m[2]), pid: Number(m[5] ?? m[4]), tid: Number(m[4]), name: (m[3] as string).trim(), start: end - run, end, delayMs: Number(m[7]) });
  }
  return out;
}

export interface CpuShare {
  /** Requests looked at, and their mean latency (ms). */
  readonly requests: number;
  readonly latencyMs: number;
  /** Mean per request, µs of the request's time: the CPU ran the processes on the path, ran anything else, or idled. */
  readonly pathUs: number;
  /** Of pathUs, the part their other threads ran (V8's compiler and GC helpers, libuv's pool), not their main threads. */
  readonly pathThreadsUs: number;
  readonly otherUs: number;
  readonly idleUs: number;
  /**
   * Mean per request: how long the path's processes waited for a CPU (ready but not running) during it, µs, summed
   * over those processes (two waiting at once count twice, so this can exceed the latency).
   */
  readonly pathWaitUs: number;
  /** The other tasks (name[pid]) that held the CPU longest during these requests, with µs per request. */
  readonly others: readonly { readonly name: string; readonly us: number }[];
  /** The path processes' other threads that held the CPU longest during these requests, with µs per request. */
  readonly pathThreads: readonly { readonly name: string; readonly us: number }[];
  /**
   * Per path role (client, server, app...): its CPU time during the request, and the longest it ran at a stretch
   * (one slice, without giving the CPU up) in the request, both means per request, µs.
   */
  readonly byRole: Readonly<Record<string, { readonly us: number; readonly longestRunUs: number }>>;
}

/**
 * For the slowest 1% of requests and for all of them: how the CPU the proxies run on spent each request's time.
 * `requests` are (scheduled monotonic ms, latency ms) pairs; `path` maps the pids of the proxies and the app to roles.
 */
export function cpuBreakdown(
  requests: Float64Array,
  slices: readonly Slice[],
  path: ReadonlyMap<number, string>,
  cpu: number,
): { slowest: CpuShare; all: CpuShare } {
  // The idle task's slices are left out: idle time is what the others leave of the request.
  const onCpu = slices.filter((s) => s.cpu === cpu && s.pid !== 0).sort((a, b) => a.start - b.start);
  const pathSlices = slices.filter((s) => path.has(s.pid)).sort((a, b) => a.start - b.start);
  const cpuReach = longest(onCpu);
  const pathReach = longest(pathSlices);
  const n = requests.length / 2;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (requests[2 * b + 1] as number) - (requests[2 * a + 1] as number));
  const slowest = order.slice(0, Math.max(1, Math.floor(n / 100)));
  const all = Array.from({ length: n }, (_, i) => i);
  return { slowest: share(slowest), all: share(all) };

  function share(indexes: readonly number[]): CpuShare {
    let latency = 0;
    let pathMs = 0;
    let threadsMs = 0;
    let otherMs = 0;
    let waitMs = 0;
    const byName = new Map<string, number>();
    const threadsByName = new Map<string, number>();
    const roleMs = new Map<string, number>();
    const roleLongest = new Map<string, number>();
    for (const i of indexes) {
      const longestHere = new Map<string, number>();
      const a = requests[2 * i] as number;
      const lat = requests[2 * i + 1] as number;
      const b = a + lat;
      latency += lat;
      for (let j = firstStartingAfter(onCpu, a - cpuReach); j < onCpu.length && (onCpu[j] as Slice).start < b; j++) {
        const s = onCpu[j] as Slice;
        const overlap = Math.min(b, s.end) - Math.max(a, s.start);
        if (overlap <= 0 || s.pid === 0) continue;
        const role = path.get(s.pid);
        if (role !== undefined) {
          pathMs += overlap;
          roleMs.set(role, (roleMs.get(role) ?? 0) + overlap);
          longestHere.set(role, Math.max(longestHere.get(role) ?? 0, s.end - s.start));
          if (s.tid !== s.pid) {
            threadsMs += overlap;
            const who = `${s.name}[${s.pid}]`;
            threadsByName.set(who, (threadsByName.get(who) ?? 0) + overlap);
          }
        } else {
          otherMs += overlap;
          const who = `${s.name}[${s.pid}]`;
          byName.set(who, (byName.get(who) ?? 0) + overlap);
        }
      }
      for (const [role, ms] of longestHere) roleLongest.set(role, (roleLongest.get(role) ?? 0) + ms);
      // A slice's delay is the wait just before its start: count the part of that wait inside the request.
      for (let j = firstStartingAfter(pathSlices, a - pathReach); j < pathSlices.length && (pathSlices[j] as Slice).start - (pathSlices[j] as Slice).delayMs < b; j++) {
        const s = pathSlices[j] as Slice;
        const from = s.start - s.delayMs;
        waitMs += Math.max(0, Math.min(b, s.start) - Math.max(a, from));
      }
    }
    const k = Math.max(1, indexes.length);
    const top = (m: Map<string, number>) =>
      [...m.entries()]
        .sort((x, y) => y[1] - x[1])
        .slice(0, 3)
        .map(([name, ms]) => ({ name, us: (ms / k) * 1000 }));
    const latencyMs = latency / k;
    return {
      requests: indexes.length,
      latencyMs,
      pathUs: (pathMs / k) * 1000,
      pathThreadsUs: (threadsMs / k) * 1000,
      otherUs: (otherMs / k) * 1000,
      idleUs: Math.max(0, latencyMs * 1000 - ((pathMs + otherMs) / k) * 1000),
      pathWaitUs: (waitMs / k) * 1000,
      others: top(byName),
      pathThreads: top(threadsByName),
      byRole: Object.fromEntries(
        [...new Set(path.values())].map((role) => [role, { us: ((roleMs.get(role) ?? 0) / k) * 1000, longestRunUs: ((roleLongest.get(role) ?? 0) / k) * 1000 }]),
      ),
    };
  }
}

/** The longest a slice reaches back from its end: its run time plus the wait before it. */
function longest(slices: readonly Slice[]): number {
  return slices.reduce((m, s) => Math.max(m, s.end - s.start + s.delayMs), 0);
}

/** Index of the first slice (sorted by start) starting at or after `t`. */
function firstStartingAfter(sorted: readonly Slice[], t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((sorted[mid] as Slice).start < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
