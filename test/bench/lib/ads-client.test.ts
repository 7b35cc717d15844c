// The benchmark's simulated sidecars against the real xDS server and cache: they sync, ACK, and spot a change.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage, grpcDefinitions, TYPE_URL } from '../../../proto/index.ts';
import { createSnapshotCache, type ControlPlaneCache } from '../../../control-plane/cache/index.ts';
import { parseRegistryText } from '../../../control-plane/registry/file.ts';
import { buildState } from '../../../control-plane/registry/objects.ts';
import { diffStates, type RegistryListener, type RegistryState } from '../../../control-plane/registry/registry.ts';
import { startXdsServer, StatusRegistry, type XdsServerHandle } from '../../../control-plane/xds/index.ts';
import { cachedNamesParts, claNameOf, type ClientKind, newCounters, SimulatedProxy, type XdsMode, withCachedNames } from './ads-client.ts';
import { ChangeTracker } from './change-tracker.ts';
import { GeneratedRegistry, namespaceName } from './registry-gen.ts';

function load(path: string): RegistryState {
  const loaded = parseRegistryText(path, readFileSync(path, 'utf8'));
  return buildState(loaded.services, loaded.slices, loaded.pods);
}

async function until(what: string, check: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('claNameOf', () => {
  it('reads cluster_name from the encoded ClusterLoadAssignment', () => {
    const name = `outbound|80||${'x'.repeat(200)}.ns.svc.cluster.local`; // a two-byte length
    const bytes = encodeMessage(TYPE_URL.endpoint, { cluster_name: name, endpoints: [] });
    expect(claNameOf(bytes)).toBe(name);
    expect(claNameOf(Uint8Array.from([0x12, 0x00]))).toBeUndefined();
  });
});

describe('SimulatedProxy against the xDS server', () => {
  let dir = '';
  let registry: GeneratedRegistry;
  let state: RegistryState;
  const listeners = new Set<RegistryListener>();
  let cache: ControlPlaneCache;
  let xds: XdsServerHandle;
  const status = new StatusRegistry();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'skein-bench-ads-'));
    registry = new GeneratedRegistry(join(dir, 'registry.yaml'), { services: 12, endpointsPerService: 3, namespaces: 2 });
    registry.write();
    state = load(registry.path);
    cache = createSnapshotCache(
      {
        state: () => state,
        subscribe: (l) => {
          listeners.add(l);
          return () => listeners.delete(l);
        },
      },
      { debounceMs: 5 },
    );
    xds = await startXdsServer({ host: '127.0.0.1', port: 0 }, cache, status);
  });

  afterAll(async () => {
    await xds?.close();
    cache?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cases = [
    ...(['sotw', 'delta'] as XdsMode[]).flatMap((mode) => (['h2', 'grpc-js'] as ClientKind[]).map((client) => ({ mode, client, vhds: true }))),
    { mode: 'delta' as XdsMode, client: 'h2' as ClientKind, vhds: false },
  ];
  for (const { mode, client, vhds } of cases) {
    const types = mode === 'delta' && vhds ? 'RDS and VHDS' : 'RDS';
    it(`${mode} (${client}${mode === 'delta' && !vhds ? ', --no-vhds' : ''}): syncs CDS, EDS, LDS and ${types}, ACKs the EDS update that carries a changed endpoint, follows a Service added and removed`, async () => {
      const tracker = new ChangeTracker(2);
      const counters = newCounters();
      const synced = new Set<number>();
      const errors: string[] = [];
      const proxies = [0, 1].map(
        (slot) =>
          new SimulatedProxy({
            address: xds.address,
            mode,
            client,
            vhds,
            slot,
            index: slot,
            namespace: namespaceName(slot),
            tracker,
            counters,
            onSynced: (s) => synced.add(s),
            onError: (_s, m) => errors.push(m),
          }),
      );
      try {
        for (const p of proxies) p.start();
        await until('both proxies to sync', () => synced.size === 2);
        const nodes = status.list().map((s) => s.nodeId);
        expect(nodes).toContain(`sidecar~127.0.0.1~p0.${namespaceName(0)}~${namespaceName(0)}.svc.cluster.local`);
        const vhdsStreams = () => status.list().filter((p) => p.types.some((t) => t.type === 'VHDS'));
        const usesVhds = mode === 'delta' && vhds;
        await until('the VHDS ACKs', () => vhdsStreams().filter((p) => p.types.every((t) => t.state === 'SYNCED')).length === (usesVhds ? 2 : 0));

        const [change] = registry.changeEndpoints(1);
        if (!change) throw new Error('no change');
        tracker.expect(1, [{ cluster: change.cluster, ip: change.ip }]);
        const edsBefore = counters.edsBytes;
        registry.write();
        const next = load(registry.path);
        const changed = diffStates(state, next);
        state = next;
        for (const l of listeners) l({ state: next, changed });
        await until('both proxies to ACK the change', () => tracker.result(1)?.ackedAt.every(Number.isFinite) ?? false);

        const r = tracker.result(1);
        for (let i = 0; i < 2; i++) expect(r?.ackedAt[i]).toBeGreaterThanOrEqual(r?.receivedAt[i] ?? Number.NaN);
        expect(counters.edsBytes).toBeGreaterThan(edsBefore);

        // A new Service: its Cluster arrives over CDS, the proxies subscribe to its EDS name and see its endpoints.
        const added = registry.addService();
        tracker.expect(2, [{ cluster: added.cluster, ip: added.ip }]);
        const publish = () => {
          registry.write();
          const after = load(registry.path);
          const diff = diffStates(state, after);
          state = after;
          for (const l of listeners) l({ state: after, changed: diff });
        };
        publish();
        await until('both proxies to receive the new Service', () => tracker.result(2)?.ackedAt.every(Number.isFinite) ?? false);
        expect(status.list({ resources: true }).some((s) => JSON.stringify(s).includes(added.cluster))).toBe(true);
        // With VHDS the new Service's virtual host comes as a resource of its own (and the route table is not resent).
        const vhostOf = (p: ReturnType<typeof status.list>[number]) => p.types.find((t) => t.type === 'VHDS')?.resources?.some((r) => r.name.includes(added.cluster.split('||')[1] ?? '?'));
        if (usesVhds) await until('the VirtualHost of the new Service', () => status.list({ resources: true }).every((p) => vhostOf(p) === true));
        registry.removeAddedService();
        publish();
        await until('the server to drop the removed EDS name', () =>
          status.list({ resources: true }).every((s) => !JSON.stringify(s).includes(added.cluster)),
        );
        expect(errors).toEqual([]);
      } finally {
        for (const p of proxies) p.close();
      }
    });
  }
});

describe('withCachedNames', () => {
  it('sends a long subscription as bytes that decode to the same SotW request, encoding each list once', () => {
    const method = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service.StreamAggregatedResources as unknown as {
      requestSerialize: (v: object) => Buffer;
      requestDeserialize: (b: Buffer) => object;
    };
    let calls = 0;
    const counting = (v: object) => {
      calls++;
      return method.requestSerialize(v);
    };
    const cached = withCachedNames(counting);
    const names = Array.from({ length: 150 }, (_, i) => `outbound|80||svc-${i}.ns.svc.cluster.local`);
    const acks = ['n1', 'n2', 'n3'].map((nonce) => ({ type_url: TYPE_URL.endpoint, version_info: 'v', response_nonce: nonce, resource_names: names }));
    for (const ack of acks) expect(method.requestDeserialize(cached(ack))).toEqual(method.requestDeserialize(method.requestSerialize(ack)));
    expect(calls).toBe(1 + acks.length); // the names once, then only the small head of each ACK
    const short = { type_url: TYPE_URL.cluster, resource_names: ['a'] };
    expect(cached(short).equals(method.requestSerialize(short))).toBe(true);
    // As parts (what H2Call writes): the head per request, then the one shared buffer of the names.
    const parts = cachedNamesParts(counting);
    const [p1, p2] = acks.map(parts);
    expect(p1?.length).toBe(2);
    expect(p1?.[1]).toBe(p2?.[1]);
    expect(method.requestDeserialize(Buffer.concat(p2 ?? []))).toEqual(method.requestDeserialize(method.requestSerialize(acks[1] as object)));
    expect(parts(short)).toHaveLength(1);
  });
});
