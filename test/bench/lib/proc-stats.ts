// Reads a process's CPU time and memory from /proc (Linux), so the control plane is measured from outside.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** Clock ticks per second of utime/stime (USER_HZ, 100 on nearly every Linux). */
export function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User + system CPU seconds the process has used so far (its threads included, not its children). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: fields after the last ')' are fixed.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / clockTicks();
}

export interface MemoryUsage {
  /** Resident set size now, bytes. */
  readonly rss: number;
  /** Peak resident set size since the process started (VmHWM), bytes. */
  readonly peakRss: number;
}

export function memoryUsage(pid: number): MemoryUsage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: kbField(status, 'VmRSS') * 1024, peakRss: kbField(status, 'VmHWM') * 1024 };
}

function kbField(status: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) : Number.NaN;
}

/** Samples RSS periodically, keeping the maximum seen (VmHWM also covers peaks between samples). */
export class RssSampler {
  private readonly pid: number;
  private timer: NodeJS.Timeout | undefined;
  max = 0;

  constructor(pid: number, everyMs = 250) {
    this.pid = pid;
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
    this.sample();
  }

  sample(): void {
    try {
      this.max = Math.max(this.max, memoryUsage(this.pid).rss);
    } catch {
      // the process is gone
    }
  }

  stop(): number {
    clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    return this.max;
  }
}
