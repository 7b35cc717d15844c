// Process helpers for the demo: pick a free port, wait for a child's HTTP endpoint to answer 200.
import type { ChildProcess } from 'node:child_process';
import { get } from 'node:http';
import { createServer } from 'node:net';

/** The preferred port if it is free on 127.0.0.1, else one the OS picks. */
export function freePort(preferred: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : port));
      });
    });
  return tryPort(preferred).catch(() => tryPort(0));
}

/** Of `addresses` ("ip:port"): those something already listens on, and the hosts this machine does not have. */
export async function unusableAddresses(addresses: readonly string[]): Promise<{ busy: string[]; missingHosts: string[] }> {
  const results = await Promise.all(
    addresses.map(
      (address) =>
        new Promise<{ address: string; code: string | undefined }>((resolve) => {
          const [host, port] = address.split(':') as [string, string];
          const server = createServer();
          server.once('error', (err: NodeJS.ErrnoException) => resolve({ address, code: err.code }));
          server.listen(Number(port), host, () => server.close(() => resolve({ address, code: undefined })));
        }),
    ),
  );
  const busy = results.filter((r) => r.code === 'EADDRINUSE').map((r) => r.address);
  const missingHosts = [...new Set(results.filter((r) => r.code === 'EADDRNOTAVAIL').map((r) => r.address.split(':')[0] as string))];
  return { busy, missingHosts };
}

function probe(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.setTimeout(1000, () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/** Resolves when `url` answers 200; rejects on timeout or when `child` exits first. */
export async function waitForHttp(url: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: number | null = null;
  child?.once('exit', (code) => {
    exited = code ?? -1;
  });
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`process for ${url} exited (code ${exited}) before it was ready`);
    if ((await probe(url)) === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} was not ready within ${timeoutMs} ms`);
}
