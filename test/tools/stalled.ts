// Runs vitest while freezing its test workers (SIGSTOP/SIGCONT) at random: a GC pause or a starved CPU, on demand.
// Timing races (a timer deciding before the I/O it waits for is read, a fixed sleep before an assertion) show up
// here within a few runs; plain CPU load rarely shows them. Usage: npm run test:stalled -- [vitest args...]
// Environment: SKEIN_STALL_MS=lo-hi (how long each freeze lasts, default 50-400), SKEIN_STALL_GAP_MS=lo-hi (time
// between freezes, default 50-400).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

function range(name: string, fallback: [number, number]): [number, number] {
  const v = process.env[name];
  if (v === undefined) return fallback;
  const m = /^(\d+)-(\d+)$/.exec(v);
  if (!m || Number(m[1]) > Number(m[2])) throw new Error(`${name}: "${v}" is not lo-hi in ms (e.g. 50-400)`);
  return [Number(m[1]), Number(m[2])];
}

const [stallLo, stallHi] = range('SKEIN_STALL_MS', [50, 400]);
const [gapLo, gapHi] = range('SKEIN_STALL_GAP_MS', [50, 400]);
const between = (lo: number, hi: number): number => lo + Math.random() * (hi - lo);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** vitest's forked test workers under `root` (processes whose command line runs vitest's forks.js). */
function workers(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    for (const child of children.get(stack.pop() as number) ?? []) {
      stack.push(child);
      try {
        if (readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('forks.js')) out.push(child);
      } catch {
        // gone meanwhile
      }
    }
  }
  return out;
}

function signal(pids: readonly number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // gone meanwhile
    }
  }
}

const vitest = spawn(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', ...process.argv.slice(2)], { stdio: 'inherit' });
let frozen: number[] = [];
let running = true;
let stalls = 0;
let stalledMs = 0;
const finish = (code: number): never => {
  running = false;
  signal(frozen, 'SIGCONT');
  process.stderr.write(`test:stalled: froze the test workers ${stalls} times, ${(stalledMs / 1000).toFixed(1)} s in all\n`);
  process.exit(code);
};
vitest.on('exit', (code, sig) => finish(code ?? (sig ? 1 : 0)));
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => vitest.kill(sig));

while (running) {
  await sleep(between(gapLo, gapHi));
  if (!running || vitest.pid === undefined) break;
  frozen = workers(vitest.pid);
  if (frozen.length === 0) continue;
  const ms = between(stallLo, stallHi);
  signal(frozen, 'SIGSTOP');
  await sleep(ms);
  signal(frozen, 'SIGCONT');
  frozen = [];
  stalls++;
  stalledMs += ms;
}
