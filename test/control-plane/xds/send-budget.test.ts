// SendBudget: streams waiting for room are woken oldest first, only while there is room, and never after cancelling.
import { describe, expect, it } from 'vitest';
import { SendBudget } from '../../../control-plane/xds/stream-io.ts';

describe('SendBudget', () => {
  it('wakes waiters oldest first while there is room, each taking its share', () => {
    const budget = new SendBudget(100);
    budget.take(100);
    const woken: number[] = [];
    for (let i = 0; i < 5; i++) {
      budget.wait(() => {
        woken.push(i);
        budget.take(40);
      });
    }
    expect(budget.open).toBe(false);
    budget.give(100); // room for three writes of 40 (0 → 40 → 80 → 120: closed)
    expect(woken).toEqual([0, 1, 2]);
    expect(budget.waiters).toBe(2);
    budget.give(120);
    expect(woken).toEqual([0, 1, 2, 3, 4]);
    expect(budget.waiters).toBe(0);
  });

  it('skips a cancelled waiter, keeps a waiter once when it waits twice, and requeues one that waits again', () => {
    const budget = new SendBudget(10);
    budget.take(10);
    const woken: string[] = [];
    const a = () => woken.push('a');
    const b = () => woken.push('b');
    const c = () => woken.push('c');
    budget.wait(a);
    budget.wait(b);
    budget.wait(a); // already waiting: keeps its place, wakes once
    budget.wait(c);
    budget.cancel(b);
    budget.give(10);
    expect(woken).toEqual(['a', 'c']);
    // b waits again after its cancel: it is woken by the next give.
    budget.take(10);
    budget.wait(b);
    budget.give(10);
    expect(woken).toEqual(['a', 'c', 'b']);
  });

  it('stays linear with thousands of streams taking turns', () => {
    const budget = new SendBudget(1);
    budget.take(1);
    let woken = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      budget.wait(() => {
        woken++;
        budget.take(1);
      });
    }
    for (let i = 0; i < n; i++) budget.give(1); // one turn at a time, as a 1000-proxy push runs
    expect(woken).toBe(n);
    expect(budget.waiters).toBe(0);
  });
});
