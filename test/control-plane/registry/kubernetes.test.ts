// KubernetesRegistry against a fake API server over real HTTP: list, watch events, slices merged, 410 relist, reconnects.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KubernetesRegistry, loadKubeConfig } from '../../../control-plane/registry/kubernetes.ts';
import type { RegistryChange, RegistryProblem, RegistryState } from '../../../control-plane/registry/registry.ts';
import { FakeKubeApiServer } from '../../fakes/kube-apiserver.ts';

const service = (ns: string, name: string, port = 80) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns },
  spec: { clusterIP: '10.96.0.1', selector: { app: name }, ports: [{ name: 'http', port, targetPort: 8080, protocol: 'TCP' }] },
});
const slice = (ns: string, svc: string, name: string, ips: string[]) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: ips.map((ip, i) => ({
    addresses: [ip],
    conditions: { ready: true },
    targetRef: { kind: 'Pod', name: `${svc}-${i}`, namespace: ns },
  })),
});
const pod = (ns: string, name: string, sa: string, phase = 'Running') => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, annotations: { 'skein.dev/inbound-port': '15006' } },
  spec: { serviceAccountName: sa, containers: [{ name: 'app', image: 'app:1' }] },
  status: { phase, podIP: '10.1.0.1' },
});

const ips = (s: RegistryState, key: string): string[] =>
  (s.slices.get(key as `${string}/${string}`) ?? []).flatMap((sl) => sl.endpoints?.map((e) => e.addresses[0] ?? '') ?? []).sort();

/** Waits until the registry's state satisfies `check` (it is eventually consistent by design). */
async function until(registry: KubernetesRegistry, check: (s: RegistryState) => boolean, what: string, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check(registry.state())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('KubernetesRegistry', () => {
  let api: FakeKubeApiServer;
  let dir: string;
  let registry: KubernetesRegistry | undefined;
  let changes: RegistryChange[];
  let problems: RegistryProblem[];

  beforeEach(async () => {
    api = await FakeKubeApiServer.start();
    dir = await mkdtemp(join(tmpdir(), 'skein-kube-'));
    changes = [];
    problems = [];
  });
  afterEach(async () => {
    await registry?.stop();
    registry = undefined;
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function startRegistry(namespaces?: string[], listPageSize?: number): Promise<KubernetesRegistry> {
    const kubeconfig = await api.writeKubeconfig(join(dir, 'kubeconfig'));
    registry = new KubernetesRegistry({ kubeconfig, namespaces, listPageSize, backoffInitialMs: 20, backoffMaxMs: 200, syncTimeoutMs: 10_000 });
    registry.subscribe((c) => changes.push(c));
    registry.onProblem((p) => problems.push(p));
    await registry.start();
    return registry;
  }

  it('lists everything once before start() resolves, merging several slices per Service and knowing pods', async () => {
    api.create(service('shop', 'web'));
    api.create(service('shop', 'db', 5432));
    api.create(slice('shop', 'web', 'web-a', ['10.0.0.1', '10.0.0.2']));
    api.create(slice('shop', 'web', 'web-b', ['10.0.0.3']));
    api.create(pod('shop', 'web-0', 'web-sa'));
    const r = await startRegistry();
    const s = r.state();
    expect(r.description).toBe(`kubernetes:${api.url}`);
    expect([...s.services.keys()].sort()).toEqual(['shop/db', 'shop/web']);
    expect(s.services.get('shop/web')?.spec?.ports?.[0]?.port).toBe(80);
    expect(s.services.get('shop/web')?.kind).toBe('Service'); // list items omit kind; the registry fills it in
    expect(s.slices.get('shop/web')?.map((x) => x.metadata?.name)).toEqual(['web-a', 'web-b']);
    expect(ips(s, 'shop/web')).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    expect(s.pods.get('shop/web-0')?.spec?.serviceAccountName).toBe('web-sa');
    expect(s.pods.get('shop/web-0')?.metadata?.annotations?.['skein.dev/inbound-port']).toBe('15006');
    expect(api.listCount('services') + api.listCount('endpointslices') + api.listCount('pods')).toBe(3);
    expect(changes).toEqual([]);
  });

  it('reflects added, modified and deleted objects, reporting only the touched Service and sharing the rest', async () => {
    api.create(service('shop', 'web'));
    api.create(service('shop', 'api'));
    api.create(slice('shop', 'web', 'web-a', ['10.0.0.1']));
    api.create(slice('shop', 'api', 'api-a', ['10.0.1.1']));
    api.create(pod('shop', 'web-0', 'web-sa'));
    const r = await startRegistry();
    const first = r.state();

    api.update(slice('shop', 'web', 'web-a', ['10.0.0.1', '10.0.0.9']));
    await until(r, (s) => ips(s, 'shop/web').length === 2, 'modified slice');
    expect(changes.at(-1)?.changed).toEqual(new Set(['shop/web']));
    expect(r.state().services.get('shop/api')).toBe(first.services.get('shop/api'));
    expect(r.state().slices.get('shop/api')?.[0]).toBe(first.slices.get('shop/api')?.[0]);

    api.create(slice('shop', 'web', 'web-b', ['10.0.0.5']));
    await until(r, (s) => ips(s, 'shop/web').includes('10.0.0.5'), 'second slice added');

    api.create(service('shop', 'new', 9000));
    await until(r, (s) => s.services.has('shop/new'), 'service added');
    expect(changes.at(-1)?.changed).toEqual(new Set(['shop/new']));

    api.delete('EndpointSlice', 'shop', 'web-a');
    await until(r, (s) => ips(s, 'shop/web').join() === '10.0.0.5', 'slice deleted');
    api.delete('Service', 'shop', 'api');
    await until(r, (s) => !s.services.has('shop/api'), 'service deleted');
    expect(changes.at(-1)?.changed).toEqual(new Set(['shop/api']));

    // A pod's status-only change is not a change (pods are trimmed to what the mesh reads)...
    const before = changes.length;
    const podBefore = r.state().pods.get('shop/web-0');
    api.update({ ...pod('shop', 'web-0', 'web-sa'), status: { phase: 'Running', podIP: '10.1.0.1', hostIP: '192.168.0.9' } });
    api.create(pod('shop', 'marker', 'other')); // same watch stream, so it arrives after the update above
    await until(r, (s) => s.pods.has('shop/marker'), 'marker pod');
    expect(changes.slice(before)).toEqual([]); // neither pod is named by a slice of a Service that changed
    expect(r.state().pods.get('shop/web-0')).toBe(podBefore);
    // ...but its service account is: it touches the Service whose slice names that pod.
    api.update(pod('shop', 'web-0', 'web-v2'));
    await until(r, (s) => s.pods.get('shop/web-0')?.spec?.serviceAccountName === 'web-v2', 'pod updated');
    expect(changes.slice(before).map((c) => [...c.changed])).toEqual([['shop/web']]);
    expect(problems).toEqual([]);
  });

  it("refuses an object whose annotations exceed Kubernetes' 256 KiB, as an invalid policy: reported, last valid version kept", async () => {
    const big = { 'example.com/blob': 'x'.repeat(256 * 1024) };
    const annotated = <T extends { metadata: object }>(o: T, annotations: Record<string, string>): T => ({ ...o, metadata: { ...o.metadata, annotations } });
    api.create(service('shop', 'web'));
    api.create(annotated(service('shop', 'huge'), big));
    const r = await startRegistry();
    expect(r.state().services.has('shop/web')).toBe(true);
    expect(r.state().services.has('shop/huge')).toBe(false);
    expect(problems.map((p) => p.message)).toEqual([
      "kubernetes Service shop/huge: metadata.annotations: too long: the annotations total 262160 bytes (keys and values), over Kubernetes' limit of 262144 (256 KiB); it is ignored until it is fixed",
    ]);
    expect(problems[0]?.code).toBe('SKEIN_REGISTRY_INVALID');
    // A valid object that grows past the limit keeps its last valid version.
    api.update(annotated(service('shop', 'web', 81), big));
    api.create(service('shop', 'marker')); // same watch stream: arrives after the update above
    await until(r, (s) => s.services.has('shop/marker'), 'marker service');
    expect(r.state().services.get('shop/web')?.spec?.ports?.[0]?.port).toBe(80);
    expect(problems.at(-1)?.message).toMatch(/^kubernetes Service shop\/web: metadata\.annotations: too long: .*; its last valid version stays in force until it is fixed$/);
    // Fixed: it applies.
    api.update(annotated(service('shop', 'huge'), { small: 'yes' }));
    await until(r, (s) => s.services.has('shop/huge'), 'fixed service');
    expect(problems).toHaveLength(2);
  });

  it('refuses a Pod whose skein.dev/inbound-port is not a port, as the file does: reported, last valid version kept', async () => {
    const withInbound = (name: string, port: string) => {
      const p = pod('shop', name, 'web-sa');
      return { ...p, metadata: { ...p.metadata, annotations: { 'skein.dev/inbound-port': port } } };
    };
    api.create(withInbound('typo', '15o06'));
    api.create(withInbound('good', '15006'));
    const r = await startRegistry();
    expect(r.state().pods.has('shop/typo')).toBe(false); // ignored: its endpoints wait for a valid Pod, never plaintext
    expect(problems.map((p) => p.message)).toEqual([
      'kubernetes Pod shop/typo: metadata.annotations["skein.dev/inbound-port"]: "15o06" is not a port number (1-65535) in quotes; it is ignored until it is fixed',
    ]);
    api.update(withInbound('good', 'x'));
    api.create(pod('shop', 'marker', 'other')); // same watch stream: arrives after the update above
    await until(r, (s) => s.pods.has('shop/marker'), 'marker pod');
    expect(r.state().pods.get('shop/good')?.metadata?.annotations?.['skein.dev/inbound-port']).toBe('15006');
    expect(problems.at(-1)?.message).toContain('its last valid version stays in force');
    api.update(withInbound('typo', '15006'));
    await until(r, (s) => s.pods.has('shop/typo'), 'fixed pod');
  });

  it('relists after 410 Gone and converges, including changes made while disconnected', async () => {
    api.create(service('shop', 'web'));
    api.create(service('shop', 'old'));
    api.create(slice('shop', 'web', 'web-a', ['10.0.0.1']));
    const r = await startRegistry();
    const listsBefore = api.listCount('services');

    api.setUnavailable(true); // watches cut; reconnects fail with 503 until the server is back
    await until(r, () => problems.length > 0, 'a watch failure reported');
    expect(problems[0]?.code).toBe('SKEIN_REGISTRY_WATCH');
    api.delete('Service', 'shop', 'old');
    api.create(service('shop', 'fresh'));
    api.update(slice('shop', 'web', 'web-a', ['10.0.0.7']));
    api.expireHistory(); // those events are compacted away: resuming the watch must answer 410
    api.setUnavailable(false);

    await until(r, (s) => s.services.has('shop/fresh') && !s.services.has('shop/old') && ips(s, 'shop/web').join() === '10.0.0.7', 'converged after relist', 10_000);
    expect(api.listCount('services')).toBeGreaterThan(listsBefore);
    expect(api.goneCount()).toBeGreaterThanOrEqual(1);
    const all = new Set(changes.flatMap((c) => [...c.changed]));
    expect(all).toEqual(new Set(['shop/old', 'shop/fresh', 'shop/web']));

    // And the watch is live again after the relist.
    api.create(service('shop', 'later'));
    await until(r, (s) => s.services.has('shop/later'), 'watch resumed after relist', 10_000);
  });

  it('reconnects after a watch is dropped (cleanly or by a network failure) without losing events', async () => {
    api.create(service('shop', 'web'));
    const r = await startRegistry();
    const listsBefore = api.listCount('services');

    // services, endpointslices, pods, peerauthentications, authorizationpolicies
    await until(r, () => api.openWatches() === 5, 'five watches open');
    expect(api.dropWatches({ abrupt: true })).toBe(5);
    api.create(service('shop', 'during-outage'));
    await until(r, (s) => s.services.has('shop/during-outage'), 'event after abrupt drop');

    await until(r, () => api.openWatches('services') === 1, 'services watch back');
    api.dropWatches();
    api.create(service('shop', 'after-clean-drop'));
    await until(r, (s) => s.services.has('shop/after-clean-drop'), 'event after clean drop');
    // Resumed from the last resourceVersion: no relist was needed.
    expect(api.listCount('services')).toBe(listsBefore);
  });

  it('lists in pages from one snapshot, then watches from it: changes made between pages arrive as events', async () => {
    for (let i = 0; i < 7; i++) api.create(service('shop', `s${i}`));
    api.create(slice('shop', 's0', 's0-a', ['10.0.0.1']));
    let changedBetweenPages = false;
    api.onList = (resource, query) => {
      if (resource !== 'services' || !query.continue || changedBetweenPages) return;
      changedBetweenPages = true;
      api.create(service('shop', 'late'));
      api.delete('Service', 'shop', 's6'); // on a later page: the snapshot still has it, the watch then deletes it
    };
    const r = await startRegistry(undefined, 3);
    const pages = api.requests.filter((q) => !q.watch && q.path === '/api/v1/services').map((q) => q.query);
    expect(pages.map((q) => q.limit)).toEqual(['3', '3', '3']);
    expect(pages.map((q) => Boolean(q.continue))).toEqual([false, true, true]);
    await until(r, (s) => s.services.has('shop/late') && !s.services.has('shop/s6'), 'changes made between pages');
    expect([...r.state().services.keys()].sort()).toEqual(['shop/late', 'shop/s0', 'shop/s1', 'shop/s2', 'shop/s3', 'shop/s4', 'shop/s5']);
    expect(ips(r.state(), 'shop/s0')).toEqual(['10.0.0.1']);
    expect(problems).toEqual([]);
  });

  it('falls back to one full list when a continue token expired mid-list, as client-go does', async () => {
    for (let i = 0; i < 7; i++) api.create(service('shop', `s${i}`));
    let expired = false;
    api.onList = (resource, query) => {
      if (resource !== 'services' || !query.continue || expired) return;
      expired = true;
      api.create(service('shop', 'late'));
      api.expireHistory(); // the snapshot behind the token is compacted: 410 Expired
    };
    const r = await startRegistry(undefined, 3);
    const lists = api.requests.filter((q) => !q.watch && q.path === '/api/v1/services');
    expect(lists.map((q) => [q.query.limit, Boolean(q.query.continue), Boolean(q.gone)])).toEqual([
      ['3', false, false],
      ['3', true, true],
      [undefined, false, false],
    ]);
    expect(r.state().services.size).toBe(8);
    expect(problems).toEqual([]);
  });

  it('watches only the namespaces it is given, one informer set per namespace', async () => {
    api.create(service('a', 'one'));
    api.create(service('b', 'two'));
    api.create(service('c', 'three'));
    api.create(slice('c', 'three', 'three-x', ['10.0.3.1']));
    api.create(pod('c', 'p', 'sa'));
    const r = await startRegistry(['a', 'b']);
    expect([...r.state().services.keys()].sort()).toEqual(['a/one', 'b/two']);
    expect(r.state().slices.size).toBe(0);
    expect(r.state().pods.size).toBe(0);
    const paths = new Set(api.requests.map((q) => q.path));
    expect(paths).toContain('/api/v1/namespaces/a/services');
    expect(paths).toContain('/apis/discovery.k8s.io/v1/namespaces/b/endpointslices');
    expect(paths).not.toContain('/api/v1/services');

    api.create(service('c', 'ignored'));
    api.create(service('b', 'seen'));
    await until(r, (s) => s.services.has('b/seen'), 'event in a watched namespace');
    expect(r.state().services.has('c/ignored')).toBe(false);
  });

  it('rejects start() with a clear error when the API server never answers', async () => {
    const kubeconfig = await api.writeKubeconfig(join(dir, 'kubeconfig'));
    api.setUnavailable(true);
    registry = new KubernetesRegistry({ kubeconfig, syncTimeoutMs: 300, backoffInitialMs: 20, backoffMaxMs: 50 });
    const err = (await registry.start().catch((e: unknown) => e)) as Error & { code: string };
    expect(err.code).toBe('SKEIN_REGISTRY_SYNC_TIMEOUT');
    expect(err.message).toContain(api.url);
    expect(err.message).toContain('services (all namespaces)');
    expect(err.message).toContain('503');
  });

  it('explains a kubeconfig that cannot be loaded', () => {
    expect(() => loadKubeConfig(join(dir, 'missing'))).toThrow(/SKEIN|cannot load Kubernetes client configuration from kubeconfig/);
    // No file, no KUBECONFIG, no ~/.kube/config, not in a pod: say so (client-node would quietly use localhost:8080).
    const saved = { HOME: process.env.HOME, KUBECONFIG: process.env.KUBECONFIG, KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST };
    process.env.HOME = dir;
    delete process.env.KUBECONFIG;
    delete process.env.KUBERNETES_SERVICE_HOST;
    try {
      expect(() => loadKubeConfig()).toThrow(/no kubeconfig found \(KUBECONFIG is not set and .*\.kube\/config does not exist\), and not in a pod/);
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
});

describe('FakeKubeApiServer', () => {
  it('pages a list in key order from the snapshot of its first page, and answers 410 once that snapshot is compacted', async () => {
    const api = await FakeKubeApiServer.start();
    type Page = { metadata: { resourceVersion: string; continue?: string; remainingItemCount?: number }; items: { metadata: { name: string; namespace: string } }[] };
    const get = async (query: string): Promise<[number, Page]> => {
      const res = await fetch(`${api.url}/api/v1/services?${query}`);
      return [res.status, (await res.json()) as Page];
    };
    try {
      for (const [ns, name] of [['b', 'x'], ['a', 'z'], ['a', 'y'], ['c', 'w']] as const) api.create(service(ns, name));
      const [, first] = await get('limit=2');
      expect(first.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(['a/y', 'a/z']);
      expect(first.metadata.remainingItemCount).toBe(2);
      api.delete('Service', 'c', 'w');
      api.create(service('b', 'new'));
      const [, second] = await get(`limit=2&continue=${encodeURIComponent(first.metadata.continue!)}`);
      expect(second.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(['b/x', 'c/w']);
      expect(second.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
      expect(second.metadata.continue).toBeUndefined();

      const [, again] = await get('limit=1');
      api.expireHistory();
      const [code, expired] = await get(`limit=1&continue=${encodeURIComponent(again.metadata.continue!)}`);
      expect(code).toBe(410);
      expect(expired).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' });
      expect((await get('continue=not-a-token'))[0]).toBe(400);
    } finally {
      await api.close();
    }
  });

  it('streams bookmarks to watches that ask for them and answers 410 to a watch from compacted history', async () => {
    const api = await FakeKubeApiServer.start();
    try {
      api.create(service('x', 'a'));
      const rv = api.resourceVersion;
      const res = await fetch(`${api.url}/api/v1/services?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`);
      const reader = res.body!.getReader();
      api.update(service('x', 'a', 81));
      expect(api.sendBookmarks()).toBe(1);
      let text = '';
      while (text.split('\n').length < 3) text += new TextDecoder().decode((await reader.read()).value);
      const events = text.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: { metadata: { resourceVersion: string } } });
      expect(events.map((e) => e.type)).toEqual(['MODIFIED', 'BOOKMARK']);
      expect(Number(events[0]!.object.metadata.resourceVersion)).toBeGreaterThan(Number(rv));
      await reader.cancel();

      api.expireHistory();
      const gone = await (await fetch(`${api.url}/api/v1/namespaces/x/services?watch=true&resourceVersion=${rv}`)).text();
      expect(JSON.parse(gone)).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
      const list = (await (await fetch(`${api.url}/api/v1/namespaces/x/services`)).json()) as Record<string, unknown>;
      expect(list).toMatchObject({ kind: 'ServiceList', apiVersion: 'v1', metadata: { resourceVersion: api.resourceVersion } });
    } finally {
      await api.close();
    }
  });
});
