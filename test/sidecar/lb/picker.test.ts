import { describe, it, expect } from 'vitest';
import { buildPicker, registeredPolicies } from '../../../sidecar/lb/index.ts';
import type { LbPolicyName } from '../../../sidecar/xds/model.ts';
import { counts, fake, seeded } from './fake.ts';

const policies: LbPolicyName[] = ['round-robin', 'random', 'ring-hash', 'p2c-ewma'];

describe('picker registry', () => {
  it('registers every built-in policy', () => {
    expect(registeredPolicies().sort()).toEqual([...policies].sort());
  });

  it('rejects an unknown policy with a stable code', () => {
    expect(() => buildPicker('least-conn' as LbPolicyName, [fake('a')])).toThrow(
      expect.objectContaining({ code: 'SKEIN_LB_UNKNOWN_POLICY' }),
    );
  });

  for (const policy of policies) {
    it(`${policy}: only healthy endpoints get picks; with none healthy the draining ones do; with neither, no picker`, () => {
      const eps = [fake('a:1'), fake('b:1', 1, 'draining'), fake('c:1', 1, 'unhealthy'), fake('d:1')];
      const p = buildPicker(policy, eps, { random: seeded(1) });
      expect(p).toBeDefined();
      const seen = new Set<string>();
      for (let i = 0; i < 500; i++) seen.add(p!.pick({ hash: `k${i}` })!.key);
      expect([...seen].sort()).toEqual(['a:1', 'd:1']);
      // As kube-proxy with serving-terminating endpoints: a Service whose every endpoint is terminating still answers.
      const fallback = buildPicker(policy, [fake('b:1', 1, 'draining'), fake('c:1', 1, 'unhealthy')], { random: seeded(2) });
      for (let i = 0; i < 50; i++) expect(fallback?.pick({ hash: `k${i}` })?.key).toBe('b:1');
      expect(buildPicker(policy, [fake('c:1', 1, 'unhealthy')])).toBeUndefined();
      expect(buildPicker(policy, [])).toBeUndefined();
    });

    it(`${policy}: honours weights (1:3)`, () => {
      const eps = [fake('a:1', 1), fake('b:1', 3)];
      const p = buildPicker(policy, eps, { random: seeded(7) })!;
      const n = 20_000;
      // Keep 8 requests in flight (FIFO), as a loaded client would: p2c balances on in-flight load per weight.
      const inflight: Array<{ e: (typeof eps)[number]; t: number }> = [];
      const picked: Array<string | undefined> = [];
      for (let i = 0; i < n; i++) {
        const e = p.pick({ hash: `user-${i}` })!;
        picked.push(e.key);
        inflight.push({ e, t: e.load.start() });
        if (inflight.length > 8) {
          const done = inflight.shift()!;
          done.e.load.finish(done.t);
        }
      }
      const c = counts(picked);
      const shareB = (c['b:1'] ?? 0) / n;
      expect(shareB).toBeGreaterThan(0.7);
      expect(shareB).toBeLessThan(0.8);
    });
  }
});
