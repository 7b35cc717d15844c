// Shutdown: waits until the workload beside the sidecar no longer needs its outbound side, or the drain period ends.
import net from 'node:net';

export interface WorkloadGoneOptions {
  /** Where the app listens, and on which ports (none: a workload that only calls out). */
  readonly appHost: string;
  readonly appPorts: readonly number[];
  /** The workload's connections to the sidecar's outbound listeners, open now. */
  readonly connections: () => number;
  /** Date.now() by which to stop waiting whatever the workload does. */
  readonly deadline: number;
  /** How often to look (ms). */
  readonly everyMs?: number;
}

/**
 * In Kubernetes the app and its sidecar get SIGTERM together, and an app finishing its work calls out through the
 * sidecar: Istio keeps the outbound side for the whole drain period, Linkerd users add a preStop sleep. Here the wait
 * ends as soon as the app stops accepting connections on its ports and its connections to the outbound side have
 * closed (a workload with no ports: once it has no connection open), so a sidecar whose app is already gone stops at once.
 */
export async function workloadGone(o: WorkloadGoneOptions): Promise<void> {
  const every = o.everyMs ?? 100;
  for (;;) {
    const left = o.deadline - Date.now();
    if (left <= 0) return;
    if (o.connections() === 0 && !(await listening(o.appHost, o.appPorts, Math.min(left, 250)))) return;
    await new Promise((r) => setTimeout(r, Math.min(every, Math.max(0, o.deadline - Date.now()))));
  }
}

/** Whether anything accepts a connection on host:port for one of the ports (a connect, closed at once). */
async function listening(host: string, ports: readonly number[], timeoutMs: number): Promise<boolean> {
  for (const port of ports) if (await accepts(host, port, timeoutMs)) return true;
  return false;
}

function accepts(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    // No answer in time (a SYN dropped, a stopped process) counts as listening: wait longer rather than cut calls off.
    const timer = setTimeout(() => done(true), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
