// The file registry's one-edit path: after each edit of a large file, the same state and changes as a full rebuild.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileRegistry, parseRegistryText } from '../../../control-plane/registry/file.ts';
import { buildState } from '../../../control-plane/registry/objects.ts';
import type { RegistryChange, RegistryState } from '../../../control-plane/registry/registry.ts';
import { diffStates } from '../../../control-plane/registry/registry.ts';

const svc = (name: string, port = 80): string =>
  `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: shop\nspec:\n  ports:\n    - name: http\n      port: ${port}\n      targetPort: 8080\n`;
const slice = (service: string, ips: string[], name = `${service}-abc`): string =>
  `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ${name}\n  namespace: shop\n  labels:\n    kubernetes.io/service-name: ${service}\naddressType: IPv4\nports: [{ name: http, port: 8080 }]\nendpoints:\n${ips
    .map((ip, i) => `  - addresses: ["${ip}"]\n    conditions: { ready: true }\n    targetRef: { kind: Pod, name: ${service}-${i} }`)
    .join('\n')}\n`;
const pod = (name: string, sa: string): string =>
  `apiVersion: v1\nkind: Pod\nmetadata: { name: ${name}, namespace: shop }\nspec: { serviceAccountName: ${sa}, containers: [{ name: app, image: x }] }\n`;

interface Model {
  services: { name: string; port: number; ips: string[]; sa: string; slices: number }[];
}

function render(m: Model): string {
  const docs: string[] = [];
  for (const s of m.services) {
    docs.push(svc(s.name, s.port));
    for (let k = 0; k < s.slices; k++) docs.push(slice(s.name, k === 0 ? s.ips : [`10.9.${k}.1`], `${s.name}-${k}`));
    s.ips.forEach((_, i) => docs.push(pod(`${s.name}-${i}`, s.sa)));
  }
  return docs.join('---\n');
}

/** The state a fresh parse of the whole text gives. */
function fresh(text: string): RegistryState {
  const l = parseRegistryText('r.yaml', text);
  return buildState(l.services, l.slices, l.pods, l.policies);
}

function plain(state: RegistryState): object {
  const sorted = <V>(m: ReadonlyMap<string, V>) => Object.fromEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
  return { services: sorted(state.services), slices: sorted(state.slices), pods: sorted(state.pods), policies: sorted(state.policies) };
}

let dir: string | undefined;
let registry: FileRegistry | undefined;
afterEach(async () => {
  await registry?.stop();
  registry = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('FileRegistry edits of a large file', () => {
  it('gives the state and changed Services of a full rebuild after each kind of edit, sharing unchanged objects', async () => {
    dir = await mkdtemp(join(tmpdir(), 'skein-edits-'));
    const path = join(dir, 'registry.yaml');
    const model: Model = {
      services: Array.from({ length: 12 }, (_, i) => ({ name: `s${i}`, port: 80, ips: [`10.0.${i}.1`, `10.0.${i}.2`], sa: `s${i}`, slices: 1 })),
    };
    await writeFile(path, render(model));
    registry = new FileRegistry(path, { debounceMs: 5, pollMs: 60_000 });
    await registry.start();
    const r = registry;
    const edits: [string, () => void][] = [
      ['an endpoint IP', () => void (model.services[3]!.ips[0] = '10.7.7.7')],
      ['a pod only (its service account)', () => void (model.services[5]!.sa = 'other')],
      ['a Service port', () => void (model.services[8]!.port = 8081)],
      ['a second slice added', () => void (model.services[2]!.slices = 2)],
      ['the second slice removed', () => void (model.services[2]!.slices = 1)],
      ['a Service removed', () => void model.services.splice(6, 1)],
      ['a Service added in the middle', () => void model.services.splice(4, 0, { name: 'new', port: 80, ips: ['10.8.0.1'], sa: 'new', slices: 1 })],
      ['two distant Services at once', () => {
        model.services[0]!.ips.push('10.0.0.9');
        model.services[model.services.length - 1]!.sa = 'far';
      }],
    ];
    for (const [what, edit] of edits) {
      const before = r.state();
      edit();
      const text = render(model);
      const next = new Promise<RegistryChange>((resolve) => {
        const off = r.subscribe((c) => {
          off();
          resolve(c);
        });
      });
      await writeFile(path, text);
      await r.reload();
      const change = await next;
      const expected = fresh(text);
      expect(plain(change.state), what).toEqual(plain(expected));
      expect(change.changed, what).toEqual(diffStates(before, change.state));
      expect(change.changed.size, what).toBeGreaterThan(0);
      for (const [key, service] of change.state.services) {
        if (!change.changed.has(key) && before.services.has(key)) expect(service, `${what}: ${key}`).toBe(before.services.get(key));
      }
    }
  });
});
