// Outbox: a stream is woken to flush again only when a flush found it blocked, not after every completed write; a
// client that does not take its bytes stops holding the shared budget (parking).
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Outbox, PARK_AFTER_MS, SendBudget } from '../../../control-plane/xds/stream-io.ts';

/** A call whose writes complete when the test says (callbacks kept in order). */
class FakeCall extends EventEmitter {
  readonly done: (() => void)[] = [];
  write(_message: unknown, cb: () => void): boolean {
    this.done.push(cb);
    return true;
  }
  complete(): void {
    this.done.shift()?.();
  }
}

function outbox(limits: { maxBufferedBytes: number; budget?: SendBudget }) {
  const call = new FakeCall();
  let wakes = 0;
  const box = new Outbox<object>(
    call as unknown as grpc.ServerDuplexStream<unknown, object>,
    { backlogLimitMs: 60_000, ...limits },
    () => wakes++,
    () => {},
  );
  return { call, box, wakes: () => wakes };
}

describe('Outbox wake-ups', () => {
  it('does not wake the stream when writes complete and no flush was held back', () => {
    const { call, box, wakes } = outbox({ maxBufferedBytes: 1000 });
    expect(box.writable).toBe(true);
    box.write({}, 100);
    box.write({}, 100);
    call.complete();
    call.complete();
    expect(wakes()).toBe(0);
    box.close();
  });

  it('wakes the stream once when a flush found it over its buffer limit and the client caught up', () => {
    const { call, box, wakes } = outbox({ maxBufferedBytes: 150 });
    box.write({}, 100);
    box.write({}, 100);
    expect(box.writable).toBe(false); // a flush stops here, with work left
    call.complete(); // 100 buffered: under the limit again
    expect(wakes()).toBe(1);
    call.complete();
    expect(wakes()).toBe(1);
    box.close();
  });

  it('wakes the stream when the shared budget has room again after a flush waited for it', () => {
    const budget = new SendBudget(100);
    const other = outbox({ maxBufferedBytes: 1000, budget });
    const { box, wakes } = outbox({ maxBufferedBytes: 1000, budget });
    other.box.write({}, 100); // the budget is full
    expect(box.writable).toBe(false);
    expect(wakes()).toBe(0);
    other.call.complete(); // room again: the waiting stream is woken
    expect(wakes()).toBe(1);
    other.box.close();
    box.close();
  });

  it('parks a client whose bytes stay unsent for PARK_AFTER_MS, and lets a client that caught up go without parking', () => {
    const budget = new SendBudget(100);
    const slow = outbox({ maxBufferedBytes: 1000, budget });
    const waiting = outbox({ maxBufferedBytes: 1000, budget });
    const start = performance.now();
    slow.box.write({}, 100); // fills the budget and is never taken by its client
    expect(waiting.box.writable).toBe(false);
    expect(slow.box.parkIfSlow(start + PARK_AFTER_MS / 2)).toBe(false); // not yet: still watched
    expect(budget.inFlight).toBe(100);
    expect(slow.box.parkIfSlow(performance.now() + PARK_AFTER_MS)).toBe(true); // parked: its budget is given back
    expect(budget.inFlight).toBe(0);
    expect(waiting.wakes()).toBe(1);
    // Its bytes completing later give back nothing more.
    slow.call.complete();
    expect(budget.inFlight).toBe(0);
    // A client that took its bytes is done with at once, with its budget given back by the write itself.
    waiting.box.write({}, 50);
    waiting.call.complete();
    expect(budget.inFlight).toBe(0);
    expect(waiting.box.parkIfSlow(performance.now() + 10 * PARK_AFTER_MS)).toBe(true);
    expect(budget.inFlight).toBe(0);
    slow.box.close();
    waiting.box.close();
  });

  it('counts a write that completed while the process was held past the backlog limit (decided after that turn\'s I/O)', async (ctx) => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const peer = await accepted;
    const call = new FakeCall();
    let exceeded = 0;
    const box = new Outbox<object>(call as unknown as grpc.ServerDuplexStream<unknown, object>, { backlogLimitMs: 300, maxBufferedBytes: 150 }, () => {}, () => exceeded++);
    // The write's completion comes as I/O (here: bytes on a socket), as grpc-js's write callbacks do.
    peer.on('data', () => call.complete());
    try {
      box.write({}, 200); // over the limit: the 300 ms backlog timer runs
      const written = performance.now();
      let late = false;
      // At 150 ms (after that turn's I/O) the completion is on its way, then the process is held (a GC pause, a
      // starved CPU) past 300 ms: the next turn runs the due timer first, with the completion unread in the socket.
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          // Held by something else before this point (npm run test:stalled), the limit had passed already.
          late = performance.now() - written >= 280;
          setImmediate(() => {
            client.write('x');
            const end = performance.now() + 400;
            while (performance.now() < end);
            resolve();
          });
        }, 150),
      );
      await new Promise((resolve) => setTimeout(resolve, 150));
      if (late) ctx.skip('the test process was held past the limit before the completion was sent');
      expect(call.done).toHaveLength(0);
      expect(exceeded).toBe(0);
    } finally {
      box.close();
      client.destroy();
      peer.destroy();
      server.close();
    }
  });
});
