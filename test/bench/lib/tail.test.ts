// The proxy benchmark's tail attribution: requests set against GC pauses, and the pause recorder in a real process.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { attributeTail, monotonicMs, runQueueNs, takePauses } from './tail.ts';

const RECORDER = fileURLToPath(new URL('pause-recorder.ts', import.meta.url));

describe('attributeTail', () => {
  it('counts a request as overlapping a pause when their intervals meet, and gives p99 without those', () => {
    // 200 requests one ms apart taking 0.2 ms, except two slow ones at 50 and 150 ms, each met by a pause.
    const pairs: number[] = [];
    for (let i = 0; i < 200; i++) pairs.push(1000 + i, i === 50 ? 8 : i === 150 ? 5 : 0.2);
    const t = attributeTail(new Float64Array(pairs), {
      client: [{ start: 1049.5, ms: 1, kind: 1 }], // meets request 50 (1050..1058); request 49 ended at 1049.2
      server: [
        { start: 1152, ms: 0.5, kind: 1 }, // meets request 150 (1150..1155)
        { start: 1100.3, ms: 0.5, kind: 1 }, // between requests 100 (ended 1100.2) and 101
      ],
    });
    expect(t.overlapAll).toBeCloseTo(2 / 200);
    expect(t.overlapSlow).toBe(1); // the slowest 1%: requests 50 and 150
    expect(t.p99).toBe(0.2); // nearest rank 198 of 200
    expect(t.p99NoPause).toBe(0.2);
    expect(t.gc.client?.maxMs).toBe(1);
    expect(t.gc.server?.perSecond).toBeCloseTo((2 / 199.2) * 1000, 3);
    // A slow request that no pause met counts against the share.
    const u = attributeTail(new Float64Array(pairs), { client: [{ start: 1049.5, ms: 1, kind: 1 }] });
    expect(u.overlapSlow).toBe(0.5);
  });
});

describe('pause recorder', () => {
  it('hands over the GC pauses of a preloaded process on SIGUSR2, timed on the monotonic clock', async () => {
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', RECORDER, '-e', 'console.log("ready"); setInterval(() => { globalThis.gc({ type: "minor" }); }, 20)'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const pid = child.pid as number;
      // The script runs after the preload: once it speaks, SIGUSR2 is handled (before, it would end the process).
      await new Promise((resolve) => child.stdout?.once('data', resolve));
      await takePauses(pid);
      const from = monotonicMs(performance.now());
      await new Promise((r) => setTimeout(r, 300));
      const pauses = await takePauses(pid);
      expect(pauses.length).toBeGreaterThan(3);
      for (const p of pauses) {
        expect(p.start).toBeGreaterThan(from - 50);
        expect(p.start).toBeLessThan(monotonicMs(performance.now()));
        expect(p.ms).toBeGreaterThanOrEqual(0);
      }
      expect(runQueueNs(pid)).toBeGreaterThanOrEqual(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
