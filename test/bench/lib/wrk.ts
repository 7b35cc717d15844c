// Runs wrk (closed loop, for maximum throughput only) pinned to the load CPUs and parses its summary.
import { execFileSync } from 'node:child_process';
import { PinnedProcess } from './pinned-process.ts';

export interface WrkResult {
  readonly requestsPerSec: number;
  readonly requests: number;
  /** Socket errors plus non-2xx/3xx responses. */
  readonly errors: number;
}

export function wrkAvailable(): boolean {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // wrk --version prints usage and exits 1 when it exists.
    return (err as { status?: number }).status === 1;
  }
}

/** Parses wrk's text report. */
export function parseWrk(text: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!rps) throw new Error(`wrk printed no Requests/sec:\n${text}`);
  const total = /(\d+) requests in/.exec(text);
  let errors = 0;
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  if (sock) errors += Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (non2xx) errors += Number(non2xx[1]);
  return { requestsPerSec: Number(rps[1]), requests: total ? Number(total[1]) : 0, errors };
}

export async function runWrk(o: {
  host: string;
  port: number;
  authority: string;
  connections: number;
  durationSec: number;
  cpus: string | undefined;
}): Promise<WrkResult> {
  const proc = new PinnedProcess(
    'wrk',
    'wrk',
    ['-t1', `-c${o.connections}`, `-d${o.durationSec}s`, '-H', `Host: ${o.authority}`, `http://${o.host}:${o.port}/`],
    { cpus: o.cpus },
  );
  return parseWrk(await proc.result((o.durationSec + 30) * 1000));
}
