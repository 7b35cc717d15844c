// The proxy benchmark's scheduler breakdown: perf sched timehist parsed, and request time split by who held the CPU.
import { describe, expect, it } from 'vitest';
import { cpuBreakdown, parseTimehist, type Slice } from './sched-trace.ts';

describe('parseTimehist', () => {
  it('reads each switch as a slice ending at its time, with thread and process ids', () => {
    const text = [
      '           time    cpu  task name                       wait time  sch delay   run time',
      '                        [tid/pid]                          (msec)     (msec)     (msec)',
      '--------------- ------  ------------------------------  ---------  ---------  ---------',
      '     798.756952 [0000]  migration/0[18]                     0.000      0.005      0.026 ',
      '     798.757163 [0001]  libuv-worker[11884/11883]           0.010      0.040      0.104 ',
      '     798.757200 [0001]  <idle>                              0.000      0.000      0.037 ',
    ].join('\n');
    const slices = parseTimehist(text);
    expect(slices).toHaveLength(2); // <idle> has no [id]: perf prints it bare, and idle is not a task we count
    expect(slices[1]).toMatchObject({ cpu: 1, pid: 11883, tid: 11884, name: 'libuv-worker', delayMs: 0.04 });
    expect(slices[0]).toMatchObject({ pid: 18, tid: 18 });
    expect(slices[1]?.end).toBeCloseTo(798757.163, 3);
    expect(slices[1]?.start).toBeCloseTo(798757.059, 3);
  });
});

describe('cpuBreakdown', () => {
  it('splits each request into the path running, others running and idle on the proxies CPU', () => {
    const slice = (pid: number, name: string, start: number, end: number, delayMs = 0, cpu = 0, tid = pid): Slice => ({ cpu, pid, tid, name, start, end, delayMs });
    // 100 requests 1 ms apart taking 0.2 ms; request 40 takes 2 ms, during which pid 9 (not on the path) ran 1.5 ms
    // and the proxy (pid 1) waited 1 ms before it ran.
    const pairs: number[] = [];
    const slices: Slice[] = [];
    for (let i = 0; i < 100; i++) {
      const at = 1000 + i;
      pairs.push(at, i === 40 ? 2 : 0.2);
      if (i !== 40 && i !== 41) slices.push(slice(1, 'node', at, at + 0.1)); // 41's work waits behind 40's
    }
    slices.push(slice(9, 'busy', 1040, 1041.5), slice(1, 'node', 1041.5, 1041.8, 1), slice(1, 'V8Worker', 1041.8, 1041.9, 0, 0, 2));
    slices.push(slice(7, 'elsewhere', 1040, 1042, 0, 1));
    const { slowest, all } = cpuBreakdown(new Float64Array(pairs), slices, new Map([[1, 'proxy']]), 0);
    expect(slowest.requests).toBe(1);
    expect(slowest.latencyMs).toBe(2);
    expect(slowest.otherUs).toBeCloseTo(1500);
    expect(slowest.pathUs).toBeCloseTo(400);
    expect(slowest.pathThreadsUs).toBeCloseTo(100);
    expect(slowest.pathThreads).toEqual([{ name: 'V8Worker[1]', us: expect.closeTo(100) }]);
    expect(slowest.idleUs).toBeCloseTo(100);
    expect(slowest.pathWaitUs).toBeCloseTo(1000);
    expect(slowest.others).toEqual([{ name: 'busy[9]', us: expect.closeTo(1500) }]);
    expect(slowest.byRole).toEqual({ proxy: { us: expect.closeTo(400), longestRunUs: expect.closeTo(300) } });
    expect(all.requests).toBe(100);
    expect(all.pathUs).toBeCloseTo((98 * 100 + 400) / 100);
  });
});
