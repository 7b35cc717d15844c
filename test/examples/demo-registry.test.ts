// Tests the demo's registry writer: replica changes replace only the launcher's objects, edits made meanwhile stay.
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RegistryWriter } from '../../examples/demo/registry.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-demo-registry-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Obj = { kind: string; metadata: { name: string; annotations?: Record<string, string> }; endpoints?: unknown[] };

const replica = (service: string, n: number) => ({ service, pod: `${service}-${n}`, ip: `127.0.0.${10 + n}`, port: 8080, serviceAccount: service });

async function objects(path: string): Promise<Obj[]> {
  return loadAll(await readFile(path, 'utf8')) as Obj[];
}

describe('the demo registry writer', () => {
  it('keeps edits made while the demo runs and replaces only its EndpointSlices and Pods', async () => {
    const path = join(dir, 'registry.yaml');
    const w = new RegistryWriter(path, 'demo', [{ name: 'hostname', replicas: 2, serviceAccount: 'hostname' }]);
    const [a, b] = [replica('hostname', 1), replica('hostname', 2)];
    w.add(a);
    w.add(b);
    await w.flush();
    // A user annotates the Service and adds an object of their own.
    const edited = (await readFile(path, 'utf8')).replace('  name: hostname\n', '  name: hostname\n  annotations:\n    skein.dev/lb-policy: round-robin\n');
    await writeFile(path, `${edited}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: mine\n  namespace: demo\nspec:\n  ports:\n    - port: 80\n`);
    w.markTerminating(b);
    await w.flush();
    w.remove(b);
    await w.flush();
    const after = await objects(path);
    expect(after.find((o) => o.kind === 'Service' && o.metadata.name === 'hostname')?.metadata.annotations).toEqual({ 'skein.dev/lb-policy': 'round-robin' });
    expect(after.some((o) => o.metadata.name === 'mine')).toBe(true);
    expect(after.filter((o) => o.kind === 'Pod').map((o) => o.metadata.name)).toEqual(['hostname-1']);
    expect(after.find((o) => o.kind === 'EndpointSlice')?.endpoints).toHaveLength(1);
  });

  it('writes a crashed replica as not ready and not serving, and ready again once it is back', async () => {
    const path = join(dir, 'registry.yaml');
    const w = new RegistryWriter(path, 'demo', [{ name: 'hostname', replicas: 2, serviceAccount: 'hostname' }]);
    const [a, b] = [replica('hostname', 1), replica('hostname', 2)];
    w.add(a);
    w.add(b);
    await w.flush();
    const conditions = async () =>
      ((await objects(path)).find((o) => o.kind === 'EndpointSlice')?.endpoints as { addresses: string[]; conditions: object }[]).map((e) => [e.addresses[0], e.conditions]);
    w.setReady(a, false);
    await w.flush();
    expect(await conditions()).toEqual([
      [a.ip, { ready: false, serving: false, terminating: false }],
      [b.ip, { ready: true, serving: true, terminating: false }],
    ]);
    w.setReady(a, true);
    await w.flush();
    expect((await conditions())[0]).toEqual([a.ip, { ready: true, serving: true, terminating: false }]);
  });

  it('puts its own objects back when an older copy of the file is restored, and leaves an unchanged file alone', async () => {
    const path = join(dir, 'registry.yaml');
    const w = new RegistryWriter(path, 'demo', [{ name: 'hostname', replicas: 2, serviceAccount: 'hostname' }]);
    const [a, b] = [replica('hostname', 1), replica('hostname', 2)];
    w.add(a);
    w.add(b);
    await w.flush();
    expect(await w.reconcile()).toBe(false);
    const old = await readFile(path, 'utf8');
    w.remove(b);
    await w.flush();
    await writeFile(path, `${old}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: mine\n  namespace: demo\n`); // the old copy, plus an edit
    expect(await w.reconcile()).toBe(true);
    const after = await objects(path);
    expect(after.filter((o) => o.kind === 'Pod').map((o) => o.metadata.name)).toEqual(['hostname-1']);
    expect(after.find((o) => o.kind === 'EndpointSlice')?.endpoints).toHaveLength(1);
    expect(after.some((o) => o.metadata.name === 'mine')).toBe(true);
    expect(await w.reconcile()).toBe(false);
  });

  /** A writer whose file was broken by hand after its first write, holding a replica's removal it could not write. */
  const skippedChange = async (): Promise<{ path: string; w: RegistryWriter; good: string }> => {
    const path = join(dir, 'registry.yaml');
    const w = new RegistryWriter(path, 'demo', [{ name: 'kv', replicas: 1, serviceAccount: 'kv' }]);
    const r = replica('kv', 1);
    w.add(r);
    await w.flush();
    const good = await readFile(path, 'utf8');
    await writeFile(path, `${good}---\nkind: [\n`);
    w.remove(r);
    await w.flush();
    expect(w.pending).toBe(true);
    return { path, w, good };
  };

  it('leaves a file that does not parse alone and writes the change once it parses again', async () => {
    const { path, w, good } = await skippedChange();
    expect(await readFile(path, 'utf8')).toContain('kind: [');
    await writeFile(path, good);
    await expect.poll(() => w.pending, { timeout: 5000 }).toBe(false);
    w.stop();
    expect((await objects(path)).filter((o) => o.kind === 'Pod')).toEqual([]);
  });

  it('says a skipped change is pending until it is in the file, not only read to be written', async () => {
    const { path, w, good } = await skippedChange();
    await writeFile(path, good);
    const flushing = w.flush();
    // Every event-loop turn until it is no longer pending: the file then already holds the change.
    const seen = await new Promise<string>((resolve) => {
      const check = (): void => {
        if (w.pending) setImmediate(check);
        else resolve(readFileSync(path, 'utf8'));
      };
      check();
    });
    await flushing;
    w.stop();
    expect((loadAll(seen) as Obj[]).filter((o) => o.kind === 'Pod')).toEqual([]);
  });
});
