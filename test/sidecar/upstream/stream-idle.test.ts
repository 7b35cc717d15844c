// The stream idle timeout interceptor, swept by hand: which requests it ends, and how.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { StreamIdleWatch } from '../../../sidecar/upstream/index.ts';
import type { DispatchController, DispatchHandler, DispatchRequest, Headers } from '../../../sidecar/upstream/index.ts';
import type { LocalReplyError } from '../../../sidecar/listeners/errors.ts';

function request(body: DispatchRequest['body'] = null): DispatchRequest {
  return { cluster: 'outbound|80||api.default.svc.cluster.local', method: 'GET', path: '/', authority: 'api', headers: [], body, hash: undefined, wantsH2: false, timeoutMs: 0 };
}

/** A handler that records what reached it, and the upstream side's controller. */
function recorder() {
  const seen: string[] = [];
  let error: LocalReplyError | undefined;
  let aborted = 0;
  const handler: DispatchHandler = {
    onRequestStart: () => seen.push('start'),
    onResponseStart: (status: number, _h: Headers) => seen.push(`head ${status}`),
    onResponseData: () => (seen.push('data'), true),
    onResponseEnd: () => seen.push('end'),
    onResponseError: (e) => {
      error = e;
      seen.push('error');
    },
  };
  const controller: DispatchController = { pause: () => {}, resume: () => {}, abort: () => void aborted++ };
  return { handler, controller, seen, error: () => error, aborted: () => aborted };
}

describe('stream idle timeout', () => {
  it('ends a request whose response never moves: 408 naming the cluster, upstream abandoned', () => {
    const watch = new StreamIdleWatch(1000, false); // ten sweeps per timeout
    let upstream: DispatchHandler | undefined;
    const r = recorder();
    watch.interceptor((_req, h) => {
      upstream = h;
      h.onRequestStart(r.controller);
    })(request(), r.handler);
    for (let i = 0; i < 9; i++) watch.sweep();
    expect(r.error()).toBeUndefined();
    watch.sweep();
    expect(r.error()?.status).toBe(408);
    expect(r.error()?.reason).toBe('stream_idle_timeout');
    expect(r.error()?.message).toContain('no response from outbound|80||api.default.svc.cluster.local for 1000 ms');
    expect(r.aborted()).toBe(1);
    // What the upstream side says afterwards goes nowhere.
    upstream?.onResponseStart(200, {});
    upstream?.onResponseEnd(undefined);
    expect(r.seen).toEqual(['start', 'error']);
  });

  it('keeps a response that moves at least once per timeout, and forgets it when it ends', () => {
    const watch = new StreamIdleWatch(1000, false);
    let upstream: DispatchHandler | undefined;
    const r = recorder();
    watch.interceptor((_req, h) => (upstream = h))(request(), r.handler);
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 9; i++) watch.sweep();
      if (round === 0) upstream?.onResponseStart(200, {});
      else upstream?.onResponseData(Buffer.from('x'));
    }
    expect(r.error()).toBeUndefined();
    upstream?.onResponseEnd(undefined);
    for (let i = 0; i < 30; i++) watch.sweep();
    expect(r.seen).toEqual(['head 200', 'data', 'data', 'data', 'data', 'end']);
  });

  it('counts request body bytes as activity, and ends a body that stops arriving: 408 saying so', () => {
    const watch = new StreamIdleWatch(1000, false);
    const body = new PassThrough();
    body.resume();
    const r = recorder();
    watch.interceptor((_req, h) => h.onRequestStart(r.controller))(request(body), r.handler);
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 9; i++) watch.sweep();
      body.write('x'); // a slow upload that keeps moving
    }
    expect(r.error()).toBeUndefined();
    for (let i = 0; i < 10; i++) watch.sweep(); // the client stops sending before the end of its body
    expect(r.error()?.status).toBe(408);
    expect(r.error()?.message).toContain('no request body bytes from the client and no response from outbound|80||api.default.svc.cluster.local for 1000 ms');
    expect(r.aborted()).toBe(1);
  });

  it('does not blame the client for a body it sent whole that the upstream has not read', async () => {
    // Ended after the request was dispatched, and ended before (a small body in the same packet as its head).
    for (const endedBefore of [false, true]) {
      const watch = new StreamIdleWatch(1000, false);
      const body = new PassThrough();
      const r = recorder();
      if (endedBefore) {
        body.end('all of it');
        await new Promise((resolve) => setImmediate(resolve));
      }
      watch.interceptor((_req, h) => h.onRequestStart(r.controller))(request(body), r.handler);
      if (!endedBefore) body.end('all of it'); // received in full, never read
      await new Promise((resolve) => setImmediate(resolve));
      for (let i = 0; i < 10; i++) watch.sweep();
      expect(r.error()?.message).toContain('stream idle timeout: no response from');
      expect(r.error()?.message).not.toContain('no request body bytes');
    }
  });

  it('0 turns it off: requests pass through unwrapped', () => {
    const watch = new StreamIdleWatch(0, false);
    const r = recorder();
    let got: DispatchHandler | undefined;
    watch.interceptor((_req, h) => (got = h))(request(), r.handler);
    expect(got).toBe(r.handler);
    watch.setTimeout(500);
    watch.interceptor((_req, h) => (got = h))(request(), r.handler);
    expect(got).not.toBe(r.handler);
    expect(watch.timeout).toBe(500);
  });
});
