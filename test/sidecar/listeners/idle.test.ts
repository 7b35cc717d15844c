// Idle downstream connections: one sweep closes those with nothing in flight past the idle time, never busy ones.
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { IdleSweeper, abandonExchanges, exchangeEnded, exchangeStarted, markActive } from '../../../sidecar/listeners/idle.ts';

describe('IdleSweeper', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  async function socketPair(n: number): Promise<net.Socket[]> {
    const server = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const out: net.Socket[] = [];
    for (let i = 0; i < n; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      out.push(s);
    }
    cleanup.push(() => {
      for (const s of out) s.destroy();
      server.close();
    });
    return out;
  }

  it('closes stamped sockets idle past the limit, keeps in-flight, recent and unstamped ones', async () => {
    const [idle, busy, recent, unstamped] = await socketPair(4);
    const sockets = new Set([idle!, busy!, recent!, unstamped!]);
    const sweeper = new IdleSweeper(sockets, 1000, 60_000);
    cleanup.push(() => sweeper.stop());
    markActive(idle!, 0);
    markActive(busy!, 0);
    const held = { closed: () => {} };
    exchangeStarted(busy!, held);
    markActive(recent!, 0);
    exchangeStarted(recent!, held);
    exchangeEnded(recent!, held, 900);
    expect(sweeper.sweep(1500)).toBe(1);
    expect(idle!.destroyed).toBe(true);
    expect(busy!.destroyed).toBe(false);
    expect(recent!.destroyed).toBe(false);
    expect(unstamped!.destroyed).toBe(false);
    // Once the exchange ends, the busy socket's idle time starts from then.
    exchangeEnded(busy!, held, 2000);
    expect(sweeper.sweep(2500)).toBe(1);
    expect(recent!.destroyed).toBe(true);
    expect(busy!.destroyed).toBe(false);
    expect(sweeper.sweep(3100)).toBe(1);
    expect(busy!.destroyed).toBe(true);
  });

  it('tells the exchanges a connection still holds when it closes, once', async () => {
    const [s] = await socketPair(1);
    const closed: string[] = [];
    const a = { closed: () => closed.push('a') };
    const b = { closed: () => closed.push('b') };
    exchangeStarted(s!, a);
    exchangeStarted(s!, b);
    exchangeEnded(s!, a, 1);
    abandonExchanges(s!);
    abandonExchanges(s!);
    expect(closed).toEqual(['b']);
  });
});
