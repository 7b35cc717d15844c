// Starts `skein control-plane` as a child process on free loopback ports, waits for /readyz, reads /metrics, stops it.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The `skein` entry point; SKEIN_BENCH_CLI points the harness at another script taking the same arguments. */
export const SKEIN_CLI = process.env.SKEIN_BENCH_CLI ?? `${REPO_ROOT}cli/skein.ts`;
const MAIN = `${REPO_ROOT}control-plane/main.ts`;

/** Whether the `skein control-plane` entry point exists yet (it is wired by the integrator). */
export function controlPlaneAvailable(): boolean {
  return existsSync(SKEIN_CLI) && (process.env.SKEIN_BENCH_CLI !== undefined || existsSync(MAIN));
}

/** A port the OS considers free right now on 127.0.0.1 (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Control planes still running: killed when this process exits, however it exits (Ctrl-C, an uncaught error). */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface ControlPlaneOptions {
  /** The registry file; or, with `kubeconfig`, the Kubernetes API server it names (`--kubernetes`). */
  readonly registry?: string;
  readonly kubeconfig?: string;
  readonly debounceMs?: number;
  /** Run under `taskset -c <cpus>` (e.g. "0"), so the load generator does not share its core. */
  readonly cpus?: string;
  /** Extra environment (for example SKEIN_DEBUG). */
  readonly env?: NodeJS.ProcessEnv;
  /** How long to wait for /readyz (ms). */
  readonly readyTimeoutMs?: number;
  /** Called with each stderr chunk (the control plane logs JSON lines there). */
  readonly onStderr?: (chunk: string) => void;
  /** Called with each stdout chunk (where node's --trace-gc writes); discarded when absent. */
  readonly onStdout?: (chunk: string) => void;
  /** Node flags for the control plane (before the script, e.g. --trace-gc); its restart (cli/lean-exec.ts) keeps them. */
  readonly nodeFlags?: readonly string[];
}

export class ControlPlaneProcess {
  readonly child: ChildProcess;
  readonly xdsAddress: string;
  readonly adminUrl: string;
  private stderrTail = '';
  private exited: Promise<number | null>;

  private constructor(
    child: ChildProcess,
    xdsAddress: string,
    adminUrl: string,
    onStderr?: (chunk: string) => void,
    onStdout?: (chunk: string) => void,
  ) {
    this.child = child;
    this.xdsAddress = xdsAddress;
    this.adminUrl = adminUrl;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-8000);
      onStderr?.(chunk);
    });
    if (onStdout) {
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', onStdout);
    } else {
      child.stdout?.resume();
    }
    live.add(child);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code) => {
        live.delete(child);
        resolve(code);
      }),
    );
  }

  static async start(options: ControlPlaneOptions): Promise<ControlPlaneProcess> {
    const xdsPort = await freePort();
    const adminPort = await freePort();
    const source = options.kubeconfig !== undefined ? ['--kubernetes', '--kubeconfig', options.kubeconfig] : ['--registry', options.registry ?? ''];
    const args = [
      ...(options.nodeFlags ?? []),
      SKEIN_CLI,
      'control-plane',
      ...source,
      '--xds-address',
      `127.0.0.1:${xdsPort}`,
      '--admin-address',
      `127.0.0.1:${adminPort}`,
      '--debounce-ms',
      String(options.debounceMs ?? 100),
      // No TLS listener or CA: it would take the fixed port 15012 and a CA directory in the work tree.
      '--xds-tls-address',
      'none',
    ];
    const [command, argv] = options.cpus
      ? ['taskset', ['-c', options.cpus, process.execPath, ...args]]
      : [process.execPath, args];
    const child = spawn(command as string, argv as string[], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const cp = new ControlPlaneProcess(child, `127.0.0.1:${xdsPort}`, `http://127.0.0.1:${adminPort}`, options.onStderr, options.onStdout);
    try {
      await cp.waitReady(options.readyTimeoutMs ?? 60_000);
    } catch (err) {
      await cp.stop();
      throw err;
    }
    return cp;
  }

  /** The slowest /readyz answer while waiting for ready (ms): the admin server answers during start-up. */
  slowestReadyzMs = 0;

  get pid(): number {
    if (this.child.pid === undefined) throw new Error('control plane has no pid');
    return this.child.pid;
  }

  /** The last lines the control plane wrote to stderr (for error messages). */
  logTail(): string {
    return this.stderrTail;
  }

  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exitCode: number | null | undefined;
    void this.exited.then((code) => {
      exitCode = code;
    });
    for (;;) {
      if (exitCode !== undefined) {
        throw new Error(`control plane exited (code ${exitCode}) before /readyz answered:\n${this.stderrTail}`);
      }
      const asked = performance.now();
      try {
        const res = await fetch(`${this.adminUrl}/readyz`, { signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        this.slowestReadyzMs = Math.max(this.slowestReadyzMs, performance.now() - asked);
        if (res.ok) return;
      } catch (err) {
        // Not listening yet (refused at once); or listening but silent for the whole timeout: the slowest answer.
        if ((err as Error).name === 'TimeoutError') this.slowestReadyzMs = Math.max(this.slowestReadyzMs, performance.now() - asked);
      }
      if (Date.now() > deadline) {
        throw new Error(`control plane not ready after ${timeoutMs} ms:\n${this.stderrTail}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async get(path: string): Promise<string> {
    const res = await fetch(`${this.adminUrl}${path}`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}: ${text.slice(0, 200)}`);
    return text;
  }

  async metrics(): Promise<string> {
    return await this.get('/metrics');
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
