// FileRegistry: parsing, validation messages per document and field, reload on change, last good state, identity sharing.
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RegistryFileMissingError, RegistryInvalidError } from '../../../control-plane/registry/errors.ts';
import { FileRegistry, parseRegistryText, writeRegistryFile } from '../../../control-plane/registry/file.ts';
import type { RegistryChange, RegistryProblem } from '../../../control-plane/registry/registry.ts';
import { diffStates } from '../../../control-plane/registry/registry.ts';

const svc = (name: string, port = 80, ns = 'default'): string => `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  ports:
    - name: http
      port: ${port}
`;
const slice = (service: string, ips: string[], name = `${service}-abc`): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}
  labels:
    kubernetes.io/service-name: ${service}
addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints:
${ips.map((ip) => `  - addresses: ["${ip}"]\n    conditions: { ready: true }\n    targetRef: { kind: Pod, name: ${service}-${ip.split('.').pop()} }`).join('\n')}
`;
const pod = (name: string, sa: string): string => `apiVersion: v1
kind: Pod
metadata: { name: ${name}, annotations: { skein.dev/inbound-port: "15006" } }
spec: { serviceAccountName: ${sa}, containers: [{ name: app, image: x }] }
`;
const docs = (...d: string[]): string => d.join('---\n');

function invalid(text: string): string[] {
  try {
    parseRegistryText('registry.yaml', text);
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryInvalidError);
    expect((err as RegistryInvalidError).code).toBe('SKEIN_REGISTRY_INVALID');
    return [...(err as RegistryInvalidError).problems];
  }
  throw new Error('expected the file to be rejected');
}

/** Collects what is written to stderr (the log) until spy.mockRestore(). */
function captureStderr() {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  return { lines, spy };
}

/** Resolves with the next change the registry emits. */
function nextChange(r: FileRegistry): Promise<RegistryChange> {
  return new Promise((resolve) => {
    const off = r.subscribe((c) => {
      off();
      resolve(c);
    });
  });
}

describe('parseRegistryText', () => {
  it('reads Services, EndpointSlices (several per Service) and Pods, flattening a v1 List', () => {
    const text = docs(
      svc('web'),
      slice('web', ['10.0.0.1', '10.0.0.2']),
      slice('web', ['10.0.0.3'], 'web-def'),
      `apiVersion: v1\nkind: List\nitems:\n  - ${pod('web-1', 'web-sa').replaceAll('\n', '\n    ').trimEnd()}\n`,
      '', // a trailing empty document is ignored
    );
    const loaded = parseRegistryText('registry.yaml', text);
    expect(loaded.services.map((s) => s.metadata?.name)).toEqual(['web']);
    expect(loaded.services[0]?.metadata?.namespace).toBe('default');
    expect(loaded.services[0]?.spec?.ports?.[0]?.port).toBe(80);
    expect(loaded.slices.map((s) => s.metadata?.name)).toEqual(['web-abc', 'web-def']);
    expect(loaded.slices[0]?.endpoints?.map((e) => e.addresses[0])).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(loaded.pods[0]?.spec?.serviceAccountName).toBe('web-sa');
    expect(loaded.pods[0]?.metadata?.annotations?.['skein.dev/inbound-port']).toBe('15006');
    expect(Object.isFrozen(loaded.services[0]?.spec?.ports)).toBe(true);
  });

  it('reads `conditions: null` on an endpoint as no conditions (ready), as the API server does', () => {
    const text = docs(svc('web'), slice('web', ['10.0.0.1']).replace('conditions: { ready: true }', 'conditions: null'));
    const state = parseRegistryText('registry.yaml', text);
    expect(state.slices[0]?.endpoints?.[0]?.conditions ?? null).toBeNull();
  });

  it('accepts the sample examples/registry.yaml', async () => {
    const text = await readFile(new URL('../../../examples/registry.yaml', import.meta.url), 'utf8');
    const loaded = parseRegistryText('examples/registry.yaml', text);
    expect(loaded.services.length).toBeGreaterThanOrEqual(4);
    const types = loaded.services.map((s) => s.spec?.type ?? (s.spec?.clusterIP === 'None' ? 'headless' : 'ClusterIP'));
    expect(types).toContain('ExternalName');
    expect(types).toContain('headless');
    expect(loaded.slices.some((s) => s.endpoints?.some((e) => e.conditions?.terminating))).toBe(true);
    expect(loaded.policies.map((p) => p.kind).sort()).toEqual(['AuthorizationPolicy', 'PeerAuthentication']);
  });

  it('names the file, document, line, object and field path of an invalid address', () => {
    const text = docs(svc('a'), svc('b'), slice('web', ['10.0.0.1', '10.0.0.x']));
    expect(invalid(text)).toEqual([
      'registry.yaml: document 3 (EndpointSlice default/web-abc, line 21): endpoints[1].addresses[0]: "10.0.0.x" is not an IP address (addressType IPv4)',
    ]);
  });

  it('collects every problem of every document, not just the first', () => {
    const text = docs(
      `apiVersion: v1\nkind: Service\nmetadata: { name: web }\nspec:\n  ports:\n    - { name: a, port: 70000, protocol: TCPX }\n    - { port: 0 }\n`,
      `kind: Service\nmetadata: {}\n`,
      `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: s }\naddressType: IPv5\nendpoints:\n  - addresses: []\n`,
      `apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: d }\n`,
      `apiVersion: v1\nkind: Pod\nmetadata: { name: p, annotations: { skein.dev/inbound-port: "x" } }\nstatus: { podIP: nope }\n`,
      `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: v6, labels: { kubernetes.io/service-name: web } }\naddressType: IPv6\nendpoints:\n  - addresses: ["10.0.0.1"]\n    conditions: { ready: "yes" }\nports: [{ port: -1 }]\n`,
      `- just\n- a list\n`,
      `apiVersion: v1\nkind: Service\nmetadata: { name: bad: colon }\n`,
    );
    const problems = invalid(text);
    const expected = [
      'document 1 (Service default/web, line 1): spec.ports[0].port: 70000 is not a port number (1-65535)',
      'document 1 (Service default/web, line 1): spec.ports[0].protocol: "TCPX" is not a protocol (TCP, UDP or SCTP)',
      'document 1 (Service default/web, line 1): spec.ports[1].port: 0 is not a port number (1-65535)',
      'document 1 (Service default/web, line 1): spec.ports[1].name: required when a Service has more than one port',
      'document 2 (Service, line 9): apiVersion: required, got missing',
      'document 2 (Service, line 9): metadata.name: required, got missing',
      'document 2 (Service, line 9): spec: required',
      'document 3 (EndpointSlice default/s, line 12): addressType: "IPv5" is not an address type (IPv4, IPv6 or FQDN)',
      'document 3 (EndpointSlice default/s, line 12): endpoints[0].addresses: required: a non-empty list of addresses, got []',
      'document 4 (Deployment default/d, line 19): kind: unknown kind "Deployment"',
      'document 5 (Pod default/p, line 23): metadata.annotations["skein.dev/inbound-port"]: "x" is not a port number',
      'document 5 (Pod default/p, line 23): status.podIP: "nope" is not an IP address',
      'document 6 (EndpointSlice default/v6, line 28): endpoints[0].addresses[0]: "10.0.0.1" is not an IP address (addressType IPv6)',
      'document 6 (EndpointSlice default/v6, line 28): endpoints[0].conditions.ready: expected true or false, got "yes"',
      'document 6 (EndpointSlice default/v6, line 28): ports[0].port: -1 is not a port number (1-65535)',
      'document 7 (line 37): expected a Kubernetes object (a mapping), got a list',
      'document 8 (line 40): YAML syntax:',
    ];
    for (const e of expected) expect(problems.some((p) => p.startsWith(`registry.yaml: ${e}`)), e).toBe(true);
    expect(problems).toHaveLength(expected.length);
  });

  it("checks names as the API server does: a Service name and a namespace are labels (no dots), a port once per protocol", () => {
    const text = docs(
      `apiVersion: v1\nkind: Service\nmetadata: { name: a.b, namespace: c }\nspec: { ports: [{ port: 80 }] }\n`,
      `apiVersion: v1\nkind: Service\nmetadata: { name: a, namespace: b.c }\nspec: { ports: [{ port: 80 }] }\n`,
      `apiVersion: v1\nkind: Service\nmetadata: { name: dup }\nspec: { ports: [{ name: http, port: 80 }, { name: alt, port: 80 }, { name: udp, port: 80, protocol: UDP }] }\n`,
      `apiVersion: v1\nkind: Service\nmetadata: { name: ${'x'.repeat(64)} }\nspec: { ports: [{ port: 80 }] }\n`,
    );
    const problems = invalid(text);
    expect(problems.some((p) => p.includes('metadata.name: "a.b" is not a valid Service name'))).toBe(true);
    expect(problems.some((p) => p.includes('metadata.namespace: "b.c" is not a valid namespace name'))).toBe(true);
    expect(problems.some((p) => p.includes('spec.ports[1].port: duplicate port 80/TCP'))).toBe(true);
    expect(problems.some((p) => p.includes(`"${'x'.repeat(64)}" is not a valid Service name`))).toBe(true);
    expect(problems).toHaveLength(4);
    // Accepted as Kubernetes accepts them: an ExternalName with a trailing dot, a slice that names no Service, a
    // dotted slice name.
    const ok = parseRegistryText(
      'registry.yaml',
      docs(
        `apiVersion: v1\nkind: Service\nmetadata: { name: ext }\nspec: { type: ExternalName, externalName: api.example.com. }\n`,
        `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: loose.slice }\naddressType: IPv4\nendpoints: [{ addresses: ["10.0.0.1"] }]\n`,
      ),
    );
    expect(ok.services.map((x) => x.metadata?.name)).toEqual(['ext']);
    expect(ok.slices.map((x) => x.metadata?.name)).toEqual(['loose.slice']);
  });

  it('reports List items with their index and duplicate objects', () => {
    const text = docs(
      `apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Service\n    metadata: { name: x }\n    spec: { ports: [{ port: 99999 }] }\n`,
      svc('web'),
      svc('web', 81),
    );
    expect(invalid(text)).toEqual([
      'registry.yaml: document 1 (Service default/x, line 1): items[0].spec.ports[0].port: 99999 is not a port number (1-65535)',
      'registry.yaml: document 3 (Service default/web, line 19): metadata.name: duplicate Service default/web (first defined in document 2 (line 9))',
    ]);
  });

  it("refuses an object whose annotations total more than Kubernetes' 256 KiB (keys and values, UTF-8 bytes)", () => {
    const limit = 256 * 1024;
    const annotated = (name: string, value: string): string =>
      `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  annotations:\n    note: "${value}"\n    k: ""\nspec:\n  ports: [{ port: 80 }]\n`;
    // At the limit exactly: keys "note" (4) + "k" (1) and the value fill it.
    const atLimit = 'x'.repeat(limit - 5);
    expect(parseRegistryText('registry.yaml', docs(annotated('ok', atLimit))).services).toHaveLength(1);
    // One byte over: a two-byte character in place of one ASCII byte.
    const over = `é${'x'.repeat(limit - 6)}`;
    expect(invalid(docs(svc('first'), annotated('big', over)))).toEqual([
      `registry.yaml: document 2 (Service default/big, line 11): metadata.annotations: too long: the annotations total ${limit + 1} bytes (keys and values), over Kubernetes' limit of ${limit} (256 KiB)`,
    ]);
  });

  it('checks ExternalName, clusterIP, targetPort, and label values', () => {
    const problems = invalid(
      `apiVersion: v1\nkind: Service\nmetadata: { name: e, labels: { tier: 3 } }\nspec:\n  type: ExternalName\n  clusterIP: 1.2.3\n  ports: [{ port: 80, targetPort: "Bad_Name" }]\n`,
    );
    expect(problems.map((p) => p.replace(/^.*line 1\): /, ''))).toEqual([
      'metadata.labels.tier: expected a string (quote numbers and booleans), got 3',
      'spec.externalName: an ExternalName Service needs a DNS name, got missing',
      'spec.clusterIP: "1.2.3" is not an IP address or "None"',
      'spec.ports[0].targetPort: "Bad_Name" is neither a port number (1-65535) nor a port name',
    ]);
  });
});

describe('FileRegistry', () => {
  let dir: string;
  let path: string;
  let registry: FileRegistry | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'skein-registry-'));
    path = join(dir, 'registry.yaml');
  });
  afterEach(async () => {
    await registry?.stop();
    registry = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('rejects start() on a missing file with a clear error', async () => {
    registry = new FileRegistry(path);
    const err = await registry.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryFileMissingError);
    expect((err as RegistryFileMissingError).code).toBe('SKEIN_REGISTRY_FILE_MISSING');
    expect((err as Error).message).toContain(path);
  });

  it('rejects start() on an invalid file, naming every problem', async () => {
    await writeFile(path, docs(svc('a', 0), svc('b', 70000)));
    registry = new FileRegistry(path);
    const err = (await registry.start().catch((e: unknown) => e)) as RegistryInvalidError;
    expect(err.code).toBe('SKEIN_REGISTRY_INVALID');
    expect(err.problems).toHaveLength(2);
    expect(err.message).toContain(`${path}: document 2 (Service default/b, line 11): spec.ports[0].port: 70000`);
    // Nothing was served yet, so the message does not promise a last good state.
    expect(err.message).toContain('fix them and start again (nothing was served)');
    expect(err.message).not.toContain('last good state');
  });

  it('serves an object with an unknown field and logs the field once, at start and for an edit', async () => {
    const typo = `apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selectr: { app: web }\n  ports:\n    - port: 80\n`;
    await writeFile(path, docs(svc('api'), typo));
    const { lines, spy } = captureStderr();
    try {
      registry = new FileRegistry(path, { debounceMs: 10, pollMs: 100 });
      await registry.start();
      expect(registry.state().services.has('default/web')).toBe(true);
      const warned = () => lines.filter((l) => l.includes('unknown field'));
      expect(warned()).toHaveLength(1);
      expect(warned()[0]).toContain(`${path}: Service default/web: spec.selectr: unknown field, ignored (a typo?)`);
      // An edit elsewhere does not repeat it; an edit of that document (still with the typo) does.
      const change = nextChange(registry);
      await writeFile(path, docs(svc('api', 81), typo.replace('port: 80', 'port: 81')));
      await change;
      expect(warned()).toHaveLength(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('says once when EndpointSlices name a Service the file does not hold (they serve nothing), and again after it was fixed', async () => {
    await writeFile(path, docs(svc('api'), slice('apii', ['10.0.0.1'])));
    const { lines, spy } = captureStderr();
    try {
      registry = new FileRegistry(path, { debounceMs: 10, pollMs: 100 });
      await registry.start();
      const warned = () => lines.filter((l) => l.includes('name a Service the file does not hold'));
      expect(warned()).toHaveLength(1);
      expect(warned()[0]).toContain('names Service \\"apii\\"');
      // An unrelated edit does not repeat it; adding the Service quiets it; losing it again says it again.
      let change = nextChange(registry);
      await writeFile(path, docs(svc('api', 81), slice('apii', ['10.0.0.1'])));
      await change;
      expect(warned()).toHaveLength(1);
      change = nextChange(registry);
      await writeFile(path, docs(svc('api', 81), svc('apii'), slice('apii', ['10.0.0.1'])));
      await change;
      change = nextChange(registry);
      await writeFile(path, docs(svc('api', 82), slice('apii', ['10.0.0.1'])));
      await change;
      expect(warned()).toHaveLength(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('reloads on change, keeps the last good state on a broken edit, recovers, and shares unchanged objects', async () => {
    await writeFile(path, docs(svc('web'), slice('web', ['10.0.0.1']), svc('api'), slice('api', ['10.0.1.1']), pod('web-1', 'web')));
    registry = new FileRegistry(path, { debounceMs: 20, pollMs: 200 });
    const problems: RegistryProblem[] = [];
    registry.onProblem((p) => problems.push(p));
    await registry.start();
    const first = registry.state();
    expect([...first.services.keys()].sort()).toEqual(['default/api', 'default/web']);
    expect(first.pods.get('default/web-1')?.spec?.serviceAccountName).toBe('web');

    // Only the api slice changes: only default/api is reported; web's objects keep their identity.
    let change = nextChange(registry);
    const writtenAt = performance.now();
    await writeFile(path, docs(svc('web'), slice('web', ['10.0.0.1']), svc('api'), slice('api', ['10.0.1.1', '10.0.1.2']), pod('web-1', 'web')));
    const c1 = await change;
    const emittedAt = performance.now();
    expect([...c1.changed]).toEqual(['default/api']);
    // When the file event came, before the read and parse: the cache's debounce starts there.
    expect(c1.detectedAt).toBeGreaterThanOrEqual(writtenAt);
    expect(c1.detectedAt).toBeLessThanOrEqual(emittedAt);
    expect(c1.state.services.get('default/web')).toBe(first.services.get('default/web'));
    expect(c1.state.slices.get('default/web')?.[0]).toBe(first.slices.get('default/web')?.[0]);
    expect(c1.state.services.get('default/api')).toBe(first.services.get('default/api'));
    expect(c1.state.slices.get('default/api')?.[0]?.endpoints).toHaveLength(2);
    expect(diffStates(first, c1.state)).toEqual(new Set(['default/api']));

    // A broken edit: rejected whole, every problem reported, the last good state stays served.
    const broken = new Promise<void>((resolve) => {
      const off = registry!.onProblem(() => {
        off();
        setTimeout(resolve, 20);
      });
    });
    await writeFile(path, docs(svc('web', 0), slice('web', ['10.0.0.999']), svc('api')));
    await broken;
    expect(problems.map((p) => p.code)).toEqual(['SKEIN_REGISTRY_INVALID', 'SKEIN_REGISTRY_INVALID']);
    expect(problems[1]?.message).toContain('endpoints[0].addresses[0]: "10.0.0.999" is not an IP address');
    expect(registry.state()).toBe(c1.state);

    // Recovery through an editor-style rename-replace: a pod change touches the Service whose slice names it.
    change = nextChange(registry);
    await writeFile(`${path}.swp`, docs(svc('web'), slice('web', ['10.0.0.1']), svc('api'), slice('api', ['10.0.1.1', '10.0.1.2']), pod('web-1', 'web-v2')));
    await rename(`${path}.swp`, path);
    const c2 = await change;
    expect([...c2.changed]).toEqual(['default/web']);
    expect(c2.state.pods.get('default/web-1')?.spec?.serviceAccountName).toBe('web-v2');
    expect(c2.state.slices.get('default/api')).toEqual(c1.state.slices.get('default/api'));

    // A Service removed is reported too.
    change = nextChange(registry);
    await writeRegistryFile(path, [...c2.state.services.values()].filter((s) => s.metadata?.name === 'web'));
    const c3 = await change;
    expect(c3.changed).toEqual(new Set(['default/api', 'default/web']));
    expect([...c3.state.services.keys()]).toEqual(['default/web']);
    expect(c3.state.services.get('default/web')).toBe(c2.state.services.get('default/web'));
  });

  it('reports a deleted file and reloads when it comes back', async () => {
    await writeFile(path, svc('web'));
    registry = new FileRegistry(path, { debounceMs: 10, pollMs: 100 });
    const problems: RegistryProblem[] = [];
    registry.onProblem((p) => problems.push(p));
    await registry.start();
    await rm(path);
    await registry.reload();
    expect(problems.map((p) => p.code)).toEqual(['SKEIN_REGISTRY_FILE_MISSING']);
    expect(registry.state().services.size).toBe(1);
    expect(registry.rejected).toBe(1); // skein_registry_rejected says so while the file is gone
    const change = nextChange(registry);
    await writeFile(path, docs(svc('web'), svc('api')));
    expect((await change).changed).toEqual(new Set(['default/api']));
    expect(registry.rejected).toBe(0);
    // Put back unchanged after a delete: nothing to apply, and nothing reported as rejected any more.
    await rm(path);
    await registry.reload();
    expect(registry.rejected).toBe(1);
    await writeFile(path, docs(svc('web'), svc('api')));
    await registry.reload();
    expect(registry.rejected).toBe(0);
  });
});

describe('FileRegistry with an emptied file', () => {
  it('waits out a truncate-then-write, refuses a file left with no objects, and empties the mesh for an empty List', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skein-registry-'));
    const path = join(dir, 'registry.yaml');
    const registry = new FileRegistry(path, { debounceMs: 10, pollMs: 5000 });
    const problems: RegistryProblem[] = [];
    registry.onProblem((p) => problems.push(p));
    try {
      await writeFile(path, svc('web'));
      await registry.start();
      const changes: RegistryChange[] = [];
      registry.subscribe((c) => changes.push(c));
      await writeFile(path, '');
      const reloading = registry.reload();
      await new Promise((r) => setTimeout(r, 30));
      await writeFile(path, docs(svc('web'), svc('api')));
      await reloading;
      await new Promise((r) => setTimeout(r, 150));
      expect(changes.map((c) => [...c.changed])).toEqual([['default/api']]);
      // Comments only, for good: refused, the last good state stays served, and the problem says how to empty it.
      await writeFile(path, '# nothing here any more\n');
      await registry.reload();
      expect(registry.state().services.size).toBe(2);
      expect(problems.at(-1)?.message).toContain('the file holds no objects; refusing to withdraw the 2 Services');
      expect(problems.at(-1)?.message).toContain('kind: List');
      await writeFile(path, 'apiVersion: v1\nkind: List\nitems: []\n');
      await registry.reload();
      expect(registry.state().services.size).toBe(0);
      expect(changes.at(-1)?.changed).toEqual(new Set(['default/api', 'default/web']));
    } finally {
      await registry.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('FileRegistry.reload() called while a read is under way', () => {
  it('resolves only once the file as it was at the call has been applied', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skein-registry-'));
    const path = join(dir, 'registry.yaml');
    // A long poll and a watcher that may or may not fire: the test drives the reads itself.
    const registry = new FileRegistry(path, { debounceMs: 10, pollMs: 60_000 });
    try {
      await writeFile(path, svc('web'));
      await registry.start();
      await writeFile(path, '');
      const first = registry.reload(); // sees an empty file and waits to see whether it stays empty
      await writeFile(path, docs(svc('web'), svc('api')));
      const second = registry.reload(); // must not resolve with the read that began before this write
      await second;
      expect([...registry.state().services.keys()].sort()).toEqual(['default/api', 'default/web']);
      await first;
      await writeFile(path, docs(svc('web'), svc('api'), svc('db')));
      const a = registry.reload();
      await writeFile(path, docs(svc('web')));
      await Promise.all([a, registry.reload(), registry.reload()]);
      expect([...registry.state().services.keys()]).toEqual(['default/web']);
    } finally {
      await registry.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('writeRegistryFile', () => {
  it('writes a multi-document file atomically that the registry reads back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skein-registry-'));
    try {
      const path = join(dir, 'r.yaml');
      const objects = parseRegistryText('x', docs(svc('web'), slice('web', ['10.0.0.1']), pod('web-1', 'web')));
      await writeRegistryFile(path, [...objects.services, ...objects.slices, ...objects.pods]);
      const again = parseRegistryText(path, await readFile(path, 'utf8'));
      expect(again).toEqual(objects);
      const { readdir } = await import('node:fs/promises');
      expect(await readdir(dir)).toEqual(['r.yaml']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('createRegistry', () => {
  it('opens the file source for a file spec', async () => {
    const { createRegistry } = await import('../../../control-plane/registry/registry.ts');
    const path = new URL('../../../examples/registry.yaml', import.meta.url).pathname;
    const registry = await createRegistry({ kind: 'file', path });
    expect(registry.description).toBe(`file:${path}`);
    await registry.start();
    try {
      expect(registry.state().services.has('shop/web')).toBe(true);
    } finally {
      await registry.stop();
    }
  });
});
