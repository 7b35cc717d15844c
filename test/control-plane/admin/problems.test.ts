// A running control plane reports config problems as they appear and clear: a bad annotation, a rejected file.
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeRegistryFile } from '../../../control-plane/registry/file.ts';
import { ControlPlaneProcess, controlPlaneAvailable } from '../../bench/lib/control-plane-process.ts';

const service = (annotations: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'shop', annotations },
  spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] },
});

let dir: string;
let path: string;
let cp: ControlPlaneProcess | undefined;
let stderr = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-problems-'));
  path = join(dir, 'registry.yaml');
  await writeRegistryFile(path, [service()]);
  cp = await ControlPlaneProcess.start({ registry: path, debounceMs: 20, readyTimeoutMs: 15_000, onStderr: (c) => (stderr += c) });
});
afterAll(async () => {
  await cp?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function gauge(name: string): Promise<number> {
  const line = (await (cp as ControlPlaneProcess).metrics()).split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

/** Replaces the file atomically, as editors and the benchmark do. */
async function replace(text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

describe.skipIf(!controlPlaneAvailable())('config problems in a running control plane', () => {
  it('logs and counts a bad annotation added by an edit, and its fix', async () => {
    expect(await gauge('skein_translation_problems')).toBe(0);
    await writeRegistryFile(path, [service({ 'skein.dev/lb-policy': 'fastest' })]);
    await expect.poll(() => gauge('skein_translation_problems'), { timeout: 10_000 }).toBe(1);
    expect(stderr).toMatch(/"msg":"translation problem".*fastest/);
    await writeRegistryFile(path, [service({ 'skein.dev/lb-policy': 'round-robin' })]);
    await expect.poll(() => gauge('skein_translation_problems'), { timeout: 10_000 }).toBe(0);
    expect(stderr).toContain('"msg":"translation problem cleared"');
  });

  it('shows a rejected file in skein_registry_rejected until a valid one replaces it', async () => {
    const good = await readFile(path, 'utf8');
    await replace(`${good}---\nkind: [\n`);
    await expect.poll(() => gauge('skein_registry_rejected'), { timeout: 10_000 }).toBe(1);
    expect((await (cp as ControlPlaneProcess).metrics())).toMatch(/^skein_registry_problems_total\{code="[A-Z_]+"\} 1$/m);
    await replace(good);
    await expect.poll(() => gauge('skein_registry_rejected'), { timeout: 10_000 }).toBe(0);
    expect(stderr).toContain('"msg":"registry file accepted again"');
  });
});
