// Keeps the demo's registry file (Services, EndpointSlices, Pods) in step with the replicas that run.
import { readFile } from 'node:fs/promises';
import { loadAll } from 'js-yaml';
import { writeRegistryFile } from '../../control-plane/registry/file.ts';

export interface ServiceSpec {
  readonly name: string;
  readonly replicas: number;
  readonly serviceAccount: string;
}

export interface Replica {
  readonly service: string;
  readonly pod: string;
  readonly ip: string;
  readonly port: number;
  readonly serviceAccount: string;
}

interface Member {
  readonly replica: Replica;
  terminating: boolean;
  /** False while one of the replica's processes is down (a crashed container: not ready, not serving). */
  ready: boolean;
}

export class RegistryWriter {
  readonly path: string;
  readonly #namespace: string;
  readonly #services: readonly ServiceSpec[];
  readonly #members = new Map<string, Member>();
  /** Every Pod the launcher ever wrote (a stopped replica's Pod is removed from the file by name). */
  readonly #podNames = new Set<string>();
  #written = false;
  #pending = false;
  #retry: NodeJS.Timeout | undefined;
  /** Flushes run one at a time (a retry and a replica change must not interleave their read and write). */
  #queue: Promise<void> = Promise.resolve();

  constructor(path: string, namespace: string, services: readonly ServiceSpec[]) {
    this.path = path;
    this.#namespace = namespace;
    this.#services = services;
  }

  add(replica: Replica): void {
    this.#members.set(replica.pod, { replica, terminating: false, ready: true });
  }

  /** The kubelet's view of a container that died (false) or came back (true). */
  setReady(replica: Replica, ready: boolean): void {
    const member = this.#members.get(replica.pod);
    if (member) member.ready = ready;
  }

  /** Kubernetes' order when a pod is deleted: still serving, no longer ready, terminating. */
  markTerminating(replica: Replica): void {
    const member = this.#members.get(replica.pod);
    if (member) member.terminating = true;
  }

  remove(replica: Replica): void {
    this.#members.delete(replica.pod);
  }


  /**
   * Writes the registry. The first write (at start) is the demo's whole mesh; later ones read the file back and
   * replace only what the launcher owns (the `<service>-demo` EndpointSlices and the replicas' Pods), so edits made
   * while the demo runs (annotations, policies, objects of your own) are kept. A file that does not parse (being
   * edited, or broken on purpose) is left alone, and the update is made by the next flush after it parses again.
   */
  flush(): Promise<void> {
    const run = this.#queue.then(() => this.#flushNow());
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Puts the launcher's own objects back if the file holds other versions of them (an older copy of the file
   * restored, a hand edit of a `<service>-demo` slice), as Kubernetes' EndpointSlice controller reverts edits to the
   * slices it manages. Resolves to true when it rewrote the file.
   */
  async reconcile(): Promise<boolean> {
    if (!this.#written || this.#pending) return false;
    let current: unknown[];
    try {
      current = loadAll(await readFile(this.path, 'utf8'));
    } catch {
      return false; // being edited: the next flush or reconcile deals with it
    }
    const want = new Map(this.#managedObjects().map((o) => [key(o), JSON.stringify(o)]));
    const have = new Map<string, string>();
    for (const o of current) {
      if (o === null || typeof o !== 'object') continue;
      const m = meta(o);
      const owned = m.namespace === this.#namespace && ((m.kind === 'Pod' && this.#podNames.has(m.name)) || (m.kind === 'EndpointSlice' && this.#services.some((svc) => `${svc.name}-demo` === m.name)));
      if (owned) have.set(key(o), JSON.stringify(o));
    }
    const same = want.size === have.size && [...want].every(([k, v]) => have.get(k) === v);
    if (same) return false;
    await this.flush();
    return true;
  }

  /** Stops retrying a skipped flush (the demo is ending). */
  stop(): void {
    clearInterval(this.#retry);
    this.#retry = undefined;
  }

  async #flushNow(): Promise<void> {
    if (!this.#written) {
      await writeRegistryFile(this.path, [...this.#baseObjects(), ...this.#managedObjects()]);
      this.#written = true;
      return;
    }
    let current: unknown[];
    try {
      current = loadAll(await readFile(this.path, 'utf8'));
    } catch {
      if (!this.#pending) console.error(`demo: ${this.path} does not parse; the replicas' endpoints are written there once it does`);
      this.#pending = true;
      this.#retry ??= setInterval(() => void this.flush(), 1000).unref();
      return;
    }
    this.stop();
    await writeRegistryFile(this.path, this.#merge(current));
    // Only once written: a caller that waits for `pending` to clear reads the change in the file.
    this.#pending = false;
  }

  /** A flush was skipped because the file did not parse, and its change is not in the file yet. */
  get pending(): boolean {
    return this.#pending;
  }

  #merge(current: readonly unknown[]): object[] {
    const managed = this.#managedObjects();
    const slices = new Map<string, { slice: object; pods: object[] }>();
    for (const o of managed) {
      const m = meta(o);
      if (m.kind === 'EndpointSlice') slices.set(m.name, { slice: o, pods: [] });
      else slices.get(`${m.service}-demo`)?.pods.push(o);
    }
    const out: object[] = [];
    for (const o of current) {
      if (o === null || typeof o !== 'object') continue;
      const m = meta(o);
      if (m.namespace === this.#namespace && m.kind === 'Pod' && this.#podNames.has(m.name)) continue; // re-added after its slice
      const own = m.namespace === this.#namespace && m.kind === 'EndpointSlice' ? slices.get(m.name) : undefined;
      if (own === undefined) {
        out.push(o);
        continue;
      }
      out.push(own.slice, ...own.pods);
      slices.delete(m.name);
    }
    for (const rest of slices.values()) out.push(rest.slice, ...rest.pods);
    return out;
  }

  #baseObjects(): object[] {
    const ns = this.#namespace;
    const objects: object[] = this.#services.map((svc) => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: svc.name, namespace: ns, labels: { app: svc.name } },
      spec: { selector: { app: svc.name }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] },
    }));
    // Only the app may call kv (mTLS identity demo/app); the load generator's direct call is refused with a 403.
    objects.push({
      apiVersion: 'skein.dev/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'kv-callers', namespace: ns },
      spec: {
        targetRefs: [{ kind: 'Service', name: 'kv' }],
        action: 'ALLOW',
        rules: [{ from: [{ source: { principals: [`${ns}/app`] } }] }],
      },
    });
    return objects;
  }

  /** Each Service's EndpointSlice followed by its replicas' Pods. */
  #managedObjects(): object[] {
    const ns = this.#namespace;
    const objects: object[] = [];
    for (const svc of this.#services) {
      const members = [...this.#members.values()].filter((m) => m.replica.service === svc.name);
      objects.push({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${svc.name}-demo`, namespace: ns, labels: { 'kubernetes.io/service-name': svc.name } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: members.map((m) => ({
          addresses: [m.replica.ip],
          conditions: { ready: m.ready && !m.terminating, serving: m.ready, terminating: m.terminating },
          targetRef: { kind: 'Pod', name: m.replica.pod, namespace: ns },
        })),
      });
      for (const m of members) {
        this.#podNames.add(m.replica.pod);
        objects.push({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: m.replica.pod, namespace: ns, labels: { app: svc.name }, annotations: { 'skein.dev/inbound-port': '15006' } },
          spec: { serviceAccountName: m.replica.serviceAccount, containers: [{ name: svc.name, image: 'local' }] },
          status: { podIP: m.replica.ip },
        });
      }
    }
    return objects;
  }
}

function key(o: object): string {
  const m = meta(o);
  return `${m.kind}/${m.namespace}/${m.name}`;
}

/** Kind, namespace, name and (for Pods) the `app` label of an object read back from the file. */
function meta(o: object): { kind: string; namespace: string; name: string; service: string } {
  const x = o as { kind?: unknown; metadata?: { namespace?: unknown; name?: unknown; labels?: { app?: unknown } } };
  return {
    kind: String(x.kind ?? ''),
    namespace: String(x.metadata?.namespace ?? 'default'),
    name: String(x.metadata?.name ?? ''),
    service: String(x.metadata?.labels?.app ?? ''),
  };
}
