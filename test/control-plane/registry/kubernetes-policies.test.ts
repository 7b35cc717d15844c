// KubernetesRegistry with the skein.dev CRDs: policies listed and watched, validated, and a missing CRD read as empty.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KubernetesRegistry } from '../../../control-plane/registry/kubernetes.ts';
import type { RegistryChange, RegistryProblem, RegistryState } from '../../../control-plane/registry/registry.ts';
import { FakeKubeApiServer } from '../../fakes/kube-apiserver.ts';

const service = (ns: string, name: string) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns },
  spec: { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
});
const peerAuth = (ns: string, name: string, mode: string, targets?: string[]) => ({
  apiVersion: 'skein.dev/v1',
  kind: 'PeerAuthentication',
  metadata: { name, namespace: ns },
  spec: { mtls: { mode }, ...(targets ? { targetRefs: targets.map((t) => ({ kind: 'Service', name: t })) } : {}) },
});
const authz = (ns: string, name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'skein.dev/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: ns },
  spec,
});

async function until(what: string, check: () => boolean, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('KubernetesRegistry policies (skein.dev/v1 custom resources)', () => {
  let api: FakeKubeApiServer;
  let dir: string;
  let registry: KubernetesRegistry | undefined;
  let changes: RegistryChange[];
  let problems: RegistryProblem[];

  beforeEach(async () => {
    api = await FakeKubeApiServer.start();
    dir = await mkdtemp(join(tmpdir(), 'skein-kube-policy-'));
    changes = [];
    problems = [];
  });
  afterEach(async () => {
    await registry?.stop();
    registry = undefined;
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function startRegistry(namespaces?: string[]): Promise<KubernetesRegistry> {
    const kubeconfig = await api.writeKubeconfig(join(dir, 'kubeconfig'));
    registry = new KubernetesRegistry({ kubeconfig, namespaces, backoffInitialMs: 20, backoffMaxMs: 200, syncTimeoutMs: 10_000, crdRecheckMs: 50 });
    registry.subscribe((c) => changes.push(c));
    registry.onProblem((p) => problems.push(p));
    await registry.start();
    return registry;
  }
  const state = (): RegistryState => registry!.state();

  it('lists policies before start() resolves and follows adds, updates and deletes, reporting the Services they touch', async () => {
    api.create(service('shop', 'web'));
    api.create(service('shop', 'api'));
    api.create(service('blog', 'db'));
    api.create(peerAuth('shop', 'legacy', 'PERMISSIVE', ['web']));
    api.create(authz('shop', 'readers', { rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] }));
    await startRegistry();
    expect([...state().policies.keys()].sort()).toEqual(['shop/AuthorizationPolicy/readers', 'shop/PeerAuthentication/legacy']);
    expect(state().policies.get('shop/PeerAuthentication/legacy')).toMatchObject({
      apiVersion: 'skein.dev/v1',
      kind: 'PeerAuthentication',
      spec: { mtls: { mode: 'PERMISSIVE' }, targetRefs: [{ kind: 'Service', name: 'web' }] },
    });
    expect(state().policies.get('shop/AuthorizationPolicy/readers')?.spec).toMatchObject({ action: 'ALLOW' });
    expect(api.requests.some((r) => r.path === '/apis/skein.dev/v1/peerauthentications' && !r.watch)).toBe(true);

    api.update(peerAuth('shop', 'legacy', 'STRICT', ['web']));
    await until('updated mode', () => (state().policies.get('shop/PeerAuthentication/legacy')?.spec as { mtls: { mode: string } }).mtls.mode === 'STRICT');
    expect([...changes.at(-1)!.changed]).toEqual(['shop/web']);

    api.create(peerAuth('skein-system', 'mesh', 'PERMISSIVE'));
    await until('mesh-wide policy', () => state().policies.has('skein-system/PeerAuthentication/mesh'));
    expect([...changes.at(-1)!.changed].sort()).toEqual(['blog/db', 'shop/api', 'shop/web']);

    api.delete('AuthorizationPolicy', 'shop', 'readers');
    await until('deleted policy', () => !state().policies.has('shop/AuthorizationPolicy/readers'));
    expect([...changes.at(-1)!.changed].sort()).toEqual(['shop/api', 'shop/web']);
    expect(problems).toEqual([]);
  });

  it('reports an invalid policy with its field path and keeps its last valid version', async () => {
    api.create(service('shop', 'web'));
    api.create(authz('shop', 'deny-writes', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] }));
    await startRegistry();
    const good = state().policies.get('shop/AuthorizationPolicy/deny-writes');
    expect(good).toBeDefined();

    api.update(authz('shop', 'deny-writes', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POSTT'] } }] }] }));
    api.create(authz('shop', 'bad-new', { action: 'AUDIT' }));
    await until('two problems', () => problems.length >= 2);
    expect(problems.map((p) => p.code)).toEqual(['SKEIN_REGISTRY_INVALID', 'SKEIN_REGISTRY_INVALID']);
    expect(problems[0]?.message).toBe(
      'kubernetes AuthorizationPolicy shop/deny-writes: spec.rules[0].to[0].operation.methods[0]: "POSTT" is not an HTTP method ' +
        '(GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH); its last valid version stays in force until it is fixed',
    );
    expect(problems[1]?.message).toContain('kubernetes AuthorizationPolicy shop/bad-new: spec.action: must be ALLOW or DENY (AUDIT is not supported)');
    expect(problems[1]?.message).toContain('it is ignored until it is fixed');
    expect(state().policies.get('shop/AuthorizationPolicy/deny-writes')).toBe(good);
    expect(state().policies.has('shop/AuthorizationPolicy/bad-new')).toBe(false);

    api.update(authz('shop', 'bad-new', { action: 'DENY' }));
    await until('fixed policy', () => state().policies.has('shop/AuthorizationPolicy/bad-new'));
  });

  it('with a namespace list, also watches skein-system for mesh-wide policies and keeps each namespace\'s own', async () => {
    api.create(service('shop', 'web'));
    api.create(peerAuth('shop', 'local', 'PERMISSIVE', ['web']));
    api.create(peerAuth('skein-system', 'mesh', 'STRICT'));
    api.create(peerAuth('blog', 'unwatched', 'STRICT'));
    await startRegistry(['shop']);
    expect([...state().policies.keys()].sort()).toEqual(['shop/PeerAuthentication/local', 'skein-system/PeerAuthentication/mesh']);
    expect(api.requests.some((r) => r.path === '/apis/skein.dev/v1/namespaces/skein-system/peerauthentications')).toBe(true);
    // One namespace's relist (after its watch is cut) leaves the other namespace's policies alone.
    api.delete('PeerAuthentication', 'skein-system', 'mesh');
    api.dropWatches({ abrupt: true });
    await until('mesh policy deleted', () => !state().policies.has('skein-system/PeerAuthentication/mesh'));
    api.create(authz('skein-system', 'mesh-deny', { action: 'DENY' }));
    await until('new mesh policy', () => state().policies.has('skein-system/AuthorizationPolicy/mesh-deny'));
    expect([...state().policies.keys()].sort()).toEqual(['shop/PeerAuthentication/local', 'skein-system/AuthorizationPolicy/mesh-deny']);
  });

  it('starts without the CRDs (empty, no problem), then picks them up once installed and empties them when removed', async () => {
    api.setCrdsInstalled(false);
    api.create(service('shop', 'web'));
    await startRegistry(['shop']);
    expect(state().services.has('shop/web')).toBe(true);
    expect(state().policies.size).toBe(0);
    expect(problems).toEqual([]);
    expect(api.requests.some((r) => r.path === '/apis/skein.dev/v1/namespaces/shop/authorizationpolicies')).toBe(true);

    api.setCrdsInstalled(true);
    api.create(peerAuth('shop', 'ns-wide', 'PERMISSIVE'));
    await until('policy after CRD install', () => state().policies.has('shop/PeerAuthentication/ns-wide'));
    expect([...changes.at(-1)!.changed]).toEqual(['shop/web']);
    // Watched from then on.
    api.create(authz('shop', 'later', {}));
    await until('watched policy', () => state().policies.has('shop/AuthorizationPolicy/later'));

    api.setCrdsInstalled(false);
    await until('policies gone with the CRD', () => state().policies.size === 0);
    api.setCrdsInstalled(true);
    api.create(peerAuth('shop', 'again', 'STRICT'));
    await until('policy after reinstall', () => state().policies.has('shop/PeerAuthentication/again'));
    expect(state().policies.size).toBe(1);
    expect(problems.filter((p) => p.code !== 'SKEIN_REGISTRY_WATCH')).toEqual([]);
  });
});
