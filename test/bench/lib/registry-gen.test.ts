// The generated registry is valid for Skein's file registry, and a change moves exactly one endpoint.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRegistryText } from '../../../control-plane/registry/file.ts';
import { GeneratedRegistry } from './registry-gen.ts';

const dir = mkdtempSync(join(tmpdir(), 'skein-bench-gen-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ips(path: string): string[] {
  const loaded = parseRegistryText(path, readFileSync(path, 'utf8'));
  return loaded.slices.flatMap((s) => (s.endpoints ?? []).flatMap((e) => e.addresses));
}

describe('GeneratedRegistry', () => {
  const reg = new GeneratedRegistry(join(dir, 'registry.yaml'), { services: 20, endpointsPerService: 4, namespaces: 3 });

  it('writes Services, EndpointSlices and Pods that the file registry accepts', () => {
    reg.write();
    const loaded = parseRegistryText(reg.path, readFileSync(reg.path, 'utf8'));
    expect(loaded.services).toHaveLength(20);
    expect(loaded.slices).toHaveLength(20);
    expect(loaded.pods).toHaveLength(80);
    const svc3 = loaded.services.find((s) => s.metadata?.name === 'svc-3');
    expect(svc3?.spec?.ports?.map((p) => [p.name, p.port, p.appProtocol])).toEqual([
      ['http', 80, undefined],
      ['grpc', 9090, 'grpc'],
    ]);
    expect(new Set(loaded.services.map((s) => s.metadata?.namespace))).toEqual(new Set(['team-0', 'team-1', 'team-2']));
    expect(reg.clusterNames()).toContain('outbound|9090||svc-3.team-0.svc.cluster.local');
  });

  it('changes one endpoint IP per Service, in a different Service each time', () => {
    const before = ips(reg.path);
    const changes = reg.changeEndpoints(3);
    reg.write();
    const after = ips(reg.path);
    expect(new Set(changes.map((c) => c.service)).size).toBe(3);
    expect(after.filter((ip) => !before.includes(ip)).sort()).toEqual(changes.map((c) => c.ip).sort());
    expect(changes[0]?.cluster).toMatch(/^outbound\|80\|\|svc-\d+\.team-\d\.svc\.cluster\.local$/);
    const loaded = parseRegistryText(reg.path, readFileSync(reg.path, 'utf8'));
    const podIps = loaded.pods.map((p) => p.status?.podIP);
    for (const c of changes) expect(podIps).toContain(c.ip);
  });
});
