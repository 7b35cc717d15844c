// The stream idle timeout after the process was held (a GC pause, a starved CPU): a response that moved in time is kept.
import { describe, expect, it } from 'vitest';
import { StreamIdleWatch } from '../../../sidecar/upstream/index.ts';
import { connectedPair, stallRequest } from './stall-peer.ts';

describe('stream idle timeout after a stall', () => {
  it('keeps a response whose bytes came before its tenth quiet sweep but were read only after the process was held past it', { timeout: 10_000 }, async (ctx) => {
    const watch = new StreamIdleWatch(2000); // a sweep every 200 ms; idle at the tenth sweep with no response event
    const pair = await connectedPair();
    const { upstream, peer } = pair;
    // Start right after a sweep, so that the sweeps fall at about 200 ms, 400 ms, ... 2000 ms from the request.
    const t0 = watch.tick;
    await new Promise<void>((r) => {
      const look = (): void => void (watch.tick !== t0 ? r() : setImmediate(look));
      look();
    });
    const start = watch.tick;
    let tickAtHold = -1;
    const outcome = await new Promise<string>((resolve) => {
      watch.interceptor((_req, h) => {
        h.onRequestStart({ pause: () => {}, resume: () => {}, abort: () => upstream.destroy() });
        upstream.once('data', () => {
          h.onResponseStart(200, {});
          h.onResponseEnd(undefined);
        });
      })(stallRequest(), {
        onRequestStart: () => {},
        onResponseStart: () => {},
        onResponseData: () => true,
        onResponseEnd: () => resolve('end'),
        onResponseError: (e) => resolve(`error ${e.status}`),
      });
      // The peer answers at 1900 ms, after the ninth sweep (1800) and before the tenth (2000). Held from 1850 ms to
      // 2350 ms: when the process runs again the answer and the tenth sweep are both due; the answer is unread.
      setTimeout(() => peer.write('x'), 1900);
      setTimeout(() => {
        tickAtHold = watch.tick;
        const end = performance.now() + 500;
        while (performance.now() < end);
      }, 1850);
    });
    await pair.close();
    watch.close();
    // The setup: nine quiet sweeps before the hold. When this process was itself held before then (a long GC pause;
    // npm run test:stalled freezes it at random), the sweeps ran late and the case is not what it is meant to be.
    if (tickAtHold - start !== 9) ctx.skip(`the test process was held before its own hold (${tickAtHold - start} sweeps, not 9)`);
    expect(outcome).toBe('end');
  });
});
