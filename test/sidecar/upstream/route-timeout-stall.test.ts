// The route timeout after the process was held (a GC pause, a starved CPU): a response that came in time is served.
import { describe, expect, it } from 'vitest';
import { timeoutInterceptor } from '../../../sidecar/upstream/index.ts';
import { connectedPair, stallRequest } from './stall-peer.ts';

describe('route timeout after a stall', () => {
  it('ends a response whose bytes came before the timeout but were read only after the process was held past it', async () => {
    const pair = await connectedPair();
    const { upstream, peer } = pair;
    const outcome = await new Promise<string>((resolve) => {
      timeoutInterceptor((_req, h) => {
        h.onRequestStart({ pause: () => {}, resume: () => {}, abort: () => upstream.destroy() });
        // The whole response in one read: head and end.
        upstream.once('data', () => {
          h.onResponseStart(200, {});
          h.onResponseEnd(undefined);
        });
      })(stallRequest(1000), {
        onRequestStart: () => {},
        onResponseStart: () => {},
        onResponseData: () => true,
        onResponseEnd: () => resolve('end'),
        onResponseError: (e) => resolve(`error ${e.status}`),
      });
      // The peer answers at 900 ms, the timeout is at 1000 ms. Held from 850 ms to 1250 ms: when the process runs
      // again the answer and the timeout are both due; the answer is in the socket, not yet read.
      setTimeout(() => peer.write('x'), 900);
      setTimeout(() => {
        const end = performance.now() + 400;
        while (performance.now() < end);
      }, 850);
    });
    await pair.close();
    expect(outcome).toBe('end');
  }, 10_000);
});
