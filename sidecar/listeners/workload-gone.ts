// Shutdown: waits until the workload beside the sidecar no longer needs its outbound side, or the drain period ends.
import net from 'node:net';

/** A workload with no connection to the outbound side for this long (and no app listening) is done with it. */
export const QUIET_MS = 1000;

export interface WorkloadGoneOptions {
  /** Where the app listens, and on which ports (none: a workload that only calls out). */
  readonly appHost: string;
  readonly appPorts: readonly number[];
  /** How long the workload has had no connection open to the sidecar's outbound listeners (0 while it has one). */
  readonly quietForMs: () => number;
  /** How long that must be to count as done (a workload opening a connection per request has none open at times). */
  readonly quietMs?: number;
  /** Date.now() by which to stop waiting whatever the workload does. */
  readonly deadline: number;
  /** How often to look (ms). */
  readonly everyMs?: number;
}

/**
 * In Kubernetes the app and its sidecar get SIGTERM together, and an app finishing its work calls out through the
 * sidecar: Istio keeps the outbound side for the whole drain period, Linkerd users add a preStop sleep. Here the wait
 * ends once the app accepts no connections on its ports and has had none open to the outbound side for QUIET_MS (a
 * workload with no ports: the latter alone), so a sidecar whose app is already gone stops within about a second.
 */
export async function workloadGone(o: WorkloadGoneOptions): Promise<void> {
  const every = o.everyMs ?? 100;
  const quiet = o.quietMs ?? QUIET_MS;
  let lookedAt = Number.NEGATIVE_INFINITY;
  for (;;) {
    const left = o.deadline - Date.now();
    if (left <= 0) return;
    // The app's ports are looked at (connect, then close) at most every LOOK_EVERY_MS, so its logs see few of them.
    if (o.quietForMs() >= quiet && Date.now() - lookedAt >= LOOK_EVERY_MS) {
      lookedAt = Date.now();
      if (!(await listening(o.appHost, o.appPorts, Math.min(left, 250)))) return;
    }
    await new Promise((r) => setTimeout(r, Math.min(every, Math.max(0, o.deadline - Date.now()))));
  }
}

/** How often the app's ports are looked at while the workload is quiet. */
const LOOK_EVERY_MS = 500;

/**
 * Whether anything accepts a connection on host:port for one of the ports: one at a time, stopping at the first that
 * does (on the pod's own address a port answers or refuses at once), so a busy app sees one look, not one per port.
 */
async function listening(host: string, ports: readonly number[], timeoutMs: number): Promise<boolean> {
  for (const port of ports) if (await accepts(host, port, timeoutMs)) return true;
  return false;
}

function accepts(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.on('error', () => {});
    const timer = setTimeout(() => {
      s.destroy();
      resolve(true);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      // Closed politely (FIN, reading what the app may send first, such as a greeting): a reset would reach an app
      // that writes on accept as ECONNRESET. A kubelet TCP probe does the same.
      s.resume();
      s.end();
      setTimeout(() => s.destroy(), 2000).unref();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(false);
    });
  });
}
