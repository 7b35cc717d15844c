// Native proxies (haproxy, nginx) as test peers: is the tool installed, and wait until a started one listens.
import { type ChildProcess, execFileSync } from 'node:child_process';
import net from 'node:net';

/** Whether `command args` runs (e.g. `nginx -v`). */
export function installed(command: string, args: readonly string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Waits until `port` on 127.0.0.1 accepts, failing with `name`'s stderr if the process exits or never listens. */
export async function waitForPort(name: string, port: number, proc: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) throw new Error(`${name} exited: ${stderr()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen on ${port}: ${stderr()}`);
}
