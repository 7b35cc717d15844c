// The benchmark's control-plane launcher passes node flags through its restart and hands its stdout over when asked.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { writeRegistryFile } from '../../../control-plane/registry/file.ts';
import { ControlPlaneProcess } from './control-plane-process.ts';

let dir: string | undefined;
let cp: ControlPlaneProcess | undefined;

afterAll(async () => {
  await cp?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('runs the control plane with the given node flags and hands over its stdout (--trace-gc lines)', async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-cp-flags-'));
  const path = join(dir, 'registry.yaml');
  await writeRegistryFile(path, [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] },
    },
  ]);
  let stdout = '';
  cp = await ControlPlaneProcess.start({
    registry: path,
    debounceMs: 20,
    readyTimeoutMs: 15_000,
    nodeFlags: ['--trace-gc'],
    onStdout: (chunk) => (stdout += chunk),
  });
  // Loading the control plane allocates far more than one young generation holds: it collects at least once.
  expect(stdout).toMatch(/\d+ ms: (Scavenge|Mark-Compact)/);
}, 30_000);
