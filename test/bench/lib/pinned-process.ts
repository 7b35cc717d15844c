// Child processes for the proxy benchmark, pinned to CPUs with taskset, killed on exit, with port and HTTP readiness waits.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const child of live) child.kill('SIGKILL');
    process.exit(130);
  });
}

export interface PinnedOptions {
  /** taskset CPU list, e.g. "0"; undefined runs unpinned. */
  readonly cpus?: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export class PinnedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  private tail = '';
  private stdoutText = '';
  readonly exited: Promise<number | null>;

  constructor(name: string, command: string, args: readonly string[], options: PinnedOptions = {}) {
    this.name = name;
    const [cmd, argv] = options.cpus ? ['taskset', ['-c', options.cpus, command, ...args]] : [command, [...args]];
    this.child = spawn(cmd, argv, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this.child);
    this.child.stdout?.setEncoding('utf8');
    this.child.stderr?.setEncoding('utf8');
    this.child.stdout?.on('data', (s: string) => {
      this.stdoutText = (this.stdoutText + s).slice(-1_000_000);
    });
    this.child.stderr?.on('data', (s: string) => {
      this.tail = (this.tail + s).slice(-8000);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this.child);
        resolve(code ?? (signal ? 128 : null));
      });
      this.child.once('error', (err) => {
        this.tail += `\nspawn error: ${err.message}`;
        live.delete(this.child);
        resolve(127);
      });
    });
  }

  /** The process id (taskset execs the command, so this is the measured process itself). */
  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name}: no pid (spawn failed: ${this.tail})`);
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  stderrTail(): string {
    return this.tail;
  }

  stdout(): string {
    return this.stdoutText;
  }

  /** Resolves with stdout once the process exits 0; rejects with its stderr otherwise. */
  async result(timeoutMs: number): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`${this.name} did not finish within ${timeoutMs} ms: ${this.tail}`));
      }, timeoutMs);
    });
    try {
      const code = await Promise.race([this.exited, timeout]);
      if (code !== 0) throw new Error(`${this.name} exited with ${code}: ${this.tail.slice(-2000)}`);
      return this.stdoutText;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM (or `signal`), then SIGKILL after graceMs. */
  async stop(graceMs = 3000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** A port the OS considers free right now on `host`. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

async function canConnect(host: string, port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Waits until something accepts connections on host:port, failing early if `proc` exits. */
export async function waitForPort(proc: PinnedProcess, host: string, port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running) throw new Error(`${proc.name} exited before listening on ${host}:${port}: ${proc.stderrTail()}`);
    if (await canConnect(host, port)) return;
    if (Date.now() > deadline) throw new Error(`${proc.name}: nothing listens on ${host}:${port} after ${timeoutMs} ms: ${proc.stderrTail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls a URL until `accept(status, body)` holds. */
export async function waitForHttp(
  proc: PinnedProcess,
  url: string,
  accept: (status: number, body: string) => boolean,
  timeoutMs = 30_000,
  headers: Record<string, string> = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (!proc.running) throw new Error(`${proc.name} exited while waiting for ${url}: ${proc.stderrTail()}`);
    try {
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(2000) });
      const body = await res.text();
      last = `HTTP ${res.status}: ${body.slice(0, 200)}`;
      if (accept(res.status, body)) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${proc.name}: ${url} not ready after ${timeoutMs} ms (last: ${last}): ${proc.stderrTail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
