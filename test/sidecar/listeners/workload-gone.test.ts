// The shutdown wait for the workload: its app's ports, its connections to the outbound side, the drain deadline.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { workloadGone } from '../../../sidecar/listeners/workload-gone.ts';

async function app(): Promise<net.Server & { port: number }> {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(server, { port: (server.address() as net.AddressInfo).port });
}

describe('workloadGone', () => {
  it('returns at once for a workload with no ports and no connection open', async () => {
    const t0 = Date.now();
    await workloadGone({ appHost: '127.0.0.1', appPorts: [], quietForMs: () => Infinity, deadline: t0 + 5000 });
    expect(Date.now() - t0).toBeLessThan(500);
  });

  it('waits while the app still listens, and ends soon after it stops', async () => {
    const a = await app();
    const t0 = Date.now();
    setTimeout(() => a.close(), 400);
    await workloadGone({ appHost: '127.0.0.1', appPorts: [a.port], quietForMs: () => Infinity, deadline: t0 + 5000, everyMs: 50 });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(380);
    expect(took).toBeLessThan(3000);
  });

  it('waits until the workload has had no connection to the outbound side for a while, and at most until the deadline', async () => {
    const t0 = Date.now();
    let closedAt: number | undefined;
    setTimeout(() => (closedAt = Date.now()), 300);
    const quietForMs = () => (closedAt === undefined ? 0 : Date.now() - closedAt);
    await workloadGone({ appHost: '127.0.0.1', appPorts: [], quietForMs, quietMs: 400, deadline: t0 + 5000, everyMs: 50 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(680);
    const a = await app();
    const t1 = Date.now();
    await workloadGone({ appHost: '127.0.0.1', appPorts: [a.port], quietForMs: () => Infinity, deadline: t1 + 300, everyMs: 50 });
    expect(Date.now() - t1).toBeLessThan(2000);
    a.close();
  });

  it('closes its look at the app politely: an app that greets on accept sees an end, not a reset', async () => {
    const errors: string[] = [];
    let ended = 0;
    const greeter = net.createServer((sock) => {
      sock.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
      sock.on('end', () => {
        ended++;
        sock.end();
      });
      sock.write('220 hello\r\n');
    });
    await new Promise<void>((r) => greeter.listen(0, '127.0.0.1', r));
    const port = (greeter.address() as net.AddressInfo).port;
    const t0 = Date.now();
    await workloadGone({ appHost: '127.0.0.1', appPorts: [port], quietForMs: () => Infinity, deadline: t0 + 400, everyMs: 50 });
    await new Promise((r) => setTimeout(r, 200));
    expect(ended).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    greeter.close();
  });
});
