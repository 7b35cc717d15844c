// A large registry file edit is parsed in slices: the event loop keeps turning, the edit lands whole, in order, or not at all.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileRegistry } from '../../../control-plane/registry/file.ts';
import type { RegistryChange } from '../../../control-plane/registry/registry.ts';
import { sliceStats } from '../../../control-plane/slices.ts';

const svc = (ns: string, name: string): string =>
  `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec:\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n`;
const slice = (ns: string, service: string, ip: string): string =>
  `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ${service}-a\n  namespace: ${ns}\n  labels:\n    kubernetes.io/service-name: ${service}\naddressType: IPv4\nports: [{ name: http, port: 8080 }]\nendpoints:\n  - addresses: ["${ip}"]\n    conditions: { ready: true }\n`;

/** Services `svc-<from>` .. `svc-<to - 1>` (each with a slice) in namespaces ns-0..ns-4. */
function mesh(from: number, to: number): string[] {
  const docs: string[] = [];
  for (let i = from; i < to; i++) {
    const ns = `ns-${i % 5}`;
    docs.push(svc(ns, `svc-${i}`), slice(ns, `svc-${i}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`));
  }
  return docs;
}

/** Counts event-loop turns (an Immediate re-armed each time it runs) until stopped. */
function turnCounter(): { readonly count: () => number; stop: () => void } {
  let n = 0;
  let immediate: NodeJS.Immediate = setImmediate(function tick() {
    n++;
    immediate = setImmediate(tick);
  });
  return { count: () => n, stop: () => clearImmediate(immediate) };
}

describe('FileRegistry: a large edit in slices', () => {
  let dir = '';
  let registry: FileRegistry | undefined;
  afterEach(async () => {
    await registry?.stop();
    registry = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function open(docs: string[]): Promise<{ path: string; changes: RegistryChange[] }> {
    dir = await mkdtemp(join(tmpdir(), 'skein-sliced-'));
    const path = join(dir, 'registry.yaml');
    await writeFile(path, docs.join('---\n'));
    // Slices of 0 ms: the loop gets a turn at every pause point, so the test counts turns, not milliseconds.
    // A long debounce and poll: only the test's reload() calls read the file.
    registry = new FileRegistry(path, { sliceMs: 0, debounceMs: 60_000, pollMs: 60_000 });
    await registry.start();
    const changes: RegistryChange[] = [];
    registry.subscribe((c) => changes.push(c));
    return { path, changes };
  }

  it('gives timers turns while it parses, then applies the edit as one change', async () => {
    const { path, changes } = await open(mesh(0, 20));
    await writeFile(path, mesh(0, 1020).join('---\n'));
    const turnsBefore = sliceStats.turns;
    const counter = turnCounter();
    let turnsAtChange = -1;
    registry?.subscribe(() => (turnsAtChange = counter.count()));
    await registry?.reload();
    counter.stop();
    // 1000 Services and 1000 slices parsed: a pause after each, and other callbacks ran between them.
    expect(sliceStats.turns - turnsBefore).toBeGreaterThanOrEqual(2000);
    expect(turnsAtChange).toBeGreaterThanOrEqual(2000);
    expect(changes).toHaveLength(1);
    expect(changes[0]?.changed.size).toBe(1000);
    expect(registry?.state().services.size).toBe(1020);
    expect(registry?.state().slices.get('ns-3/svc-1018')?.[0]?.endpoints?.[0]?.addresses).toEqual(['10.0.3.250']);
  });

  it('keeps serving the last good state, unchanged, while and after a large edit is rejected', async () => {
    const { path, changes } = await open(mesh(0, 20));
    const before = registry?.state();
    await writeFile(path, [...mesh(0, 1020), 'apiVersion: v1\nkind: Service\nmetadata: { namespace: ns-0 }\n'].join('---\n'));
    const problems: string[] = [];
    registry?.onProblem((p) => problems.push(p.message));
    const reloading = registry?.reload();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(registry?.state()).toBe(before); // nothing half-applied while it parses
    await reloading;
    expect(registry?.state()).toBe(before);
    expect(changes).toHaveLength(0);
    expect(problems.join('\n')).toMatch(/document 2041.*metadata\.name/);
  });

  it('applies an edit made during a long one after it, in order, and loses neither', async () => {
    const { path, changes } = await open(mesh(0, 20));
    await writeFile(path, mesh(0, 1020).join('---\n'));
    const first = registry?.reload();
    // Wait until the first edit is being parsed (turns between its slices), then edit again.
    const start = sliceStats.turns;
    for (let i = 0; sliceStats.turns < start + 20; i++) {
      expect(i, 'the first edit gave no turns while parsing').toBeLessThan(100_000);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await writeFile(path, mesh(10, 1020).join('---\n')); // svc-0..svc-9 removed
    const second = registry?.reload();
    await first;
    await second;
    await registry?.reload(); // settles: the queued reload has run
    expect(changes.map((c) => c.state.services.size)).toEqual([1020, 1010]);
    expect(changes[1]?.changed).toEqual(new Set(Array.from({ length: 10 }, (_, i) => `ns-${i % 5}/svc-${i}`)));
    expect(registry?.state().services.has('ns-0/svc-0')).toBe(false);
    expect(registry?.state().services.has('ns-4/svc-1019')).toBe(true);
  });
});
