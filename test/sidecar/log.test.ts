// Tests the sidecar's logger: warnings are rate-limited per message, and what was left out is counted in one line.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { logger } from '../../sidecar/log.ts';

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('sidecar log rate limit', () => {
  it('writes 20 of a flood of one warning in 10 s, then one line counting the rest; other messages are not held back', () => {
    vi.useFakeTimers();
    const lines: Record<string, unknown>[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      return true;
    });
    const log = logger('ratetest');
    for (let i = 0; i < 500; i++) log.warn('inbound mTLS handshake failed', { i });
    log.warn('another warning');
    log.info('info is never limited');
    expect(lines.filter((l) => l.msg === 'inbound mTLS handshake failed')).toHaveLength(20);
    expect(lines.some((l) => l.msg === 'another warning')).toBe(true);
    vi.advanceTimersByTime(10_000);
    const summary = lines.find((l) => String(l.msg).includes('more like this'));
    expect(summary?.msg).toBe('inbound mTLS handshake failed (480 more like this in 10 s, not logged)');
    expect(summary?.suppressed).toBe(480);
    // A new window writes again.
    log.warn('inbound mTLS handshake failed', { i: 'next' });
    expect(lines.at(-1)?.i).toBe('next');
  });
});
