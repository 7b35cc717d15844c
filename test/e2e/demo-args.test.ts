// `skein demo`'s flags: a bad --duration is refused before anything starts.
import { describe, expect, it, vi } from 'vitest';
import { runDemo } from '../../examples/demo/launcher.ts';

describe('skein demo flags', () => {
  it('refuses a --duration that is not a number of seconds above 0, starting nothing', async () => {
    const err: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err.push(String(chunk));
      return true;
    });
    try {
      for (const value of ['abc', '0', '-3']) expect(await runDemo([`--duration=${value}`])).toBe(2);
    } finally {
      spy.mockRestore();
    }
    expect(err.join('')).toContain('skein demo: --duration: "abc" is not a number of seconds above 0');
  });
});
