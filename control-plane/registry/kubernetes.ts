// KubernetesRegistry: Services, EndpointSlices, Pods and skein.dev policies from the API server through informers (list+watch).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type Informer,
  type V1EndpointSlice,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { logger } from '../log.ts';
import { PROBLEM_INVALID, PROBLEM_WATCH, RegistryKubeconfigError, RegistrySyncTimeoutError } from './errors.ts';
import { Listeners, buildState, normalize, normalizePolicy, objectKey, reuse, type Kind } from './objects.ts';
import type { PolicyKind, Registry, RegistryChange, RegistryListener, RegistryProblem, RegistryState } from './registry.ts';
import { EMPTY_STATE, MESH_POLICY_NAMESPACE, diffStates } from './registry.ts';
import { DEFAULT_LIST_PAGE_SIZE, Feed, isNotFound, type ListFn, type PolicyStore } from './feed.ts';
import { checkAuthorizationPolicy, checkPeerAuthentication } from './validate-policy.ts';
import { annotationSizeProblem, checkPod } from './validate.ts';

const log = logger('registry');

export interface KubernetesRegistryOptions {
  /** A kubeconfig file; without it: in-cluster when KUBERNETES_SERVICE_HOST is set, else the default kubeconfig. */
  readonly kubeconfig?: string;
  /** A ready KubeConfig (takes precedence over `kubeconfig`). */
  readonly kubeConfig?: KubeConfig;
  /** Watch only these namespaces (one informer set each); empty or absent: all namespaces. */
  readonly namespaces?: readonly string[];
  /** start() rejects if the informers have not all listed once by then (ms); default 60 s. */
  readonly syncTimeoutMs?: number;
  /** Restart backoff after a list or watch failure: first delay and cap (ms), with jitter. */
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  /** While a skein.dev CRD is not installed (404 on list), look for it again this often (ms); default 60 s. */
  readonly crdRecheckMs?: number;
  /** Lists ask for this many objects per page (the API's `limit`); default 500 as client-go; 0: one unpaginated list. */
  readonly listPageSize?: number;
}

/** The custom resources Skein reads: group skein.dev, version v1 (deploy/crds.yaml installs them). */
export const POLICY_GROUP = 'skein.dev';
export const POLICY_VERSION = 'v1';
export const POLICY_PLURALS: Readonly<Record<PolicyKind, string>> = {
  PeerAuthentication: 'peerauthentications',
  AuthorizationPolicy: 'authorizationpolicies',
};

/** Loads client configuration: an explicit file, in-cluster service account, or the default kubeconfig. */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  const source = file ? `kubeconfig ${file}` : process.env.KUBERNETES_SERVICE_HOST ? 'the in-cluster service account' : 'the default kubeconfig';
  try {
    if (file) kc.loadFromFile(file);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else {
      // client-node falls back to http://localhost:8080 when it finds nothing, which then fails on every list with
      // an unrelated TLS message: say what is missing instead.
      // Where client-node looks on Linux and macOS ($HOME/.kube/config); elsewhere it is left to client-node.
      const home = process.env.HOME ? join(process.env.HOME, '.kube', 'config') : undefined;
      if (!process.env.KUBECONFIG && home !== undefined && process.platform !== 'win32' && !existsSync(home)) {
        throw new Error(`no kubeconfig found (KUBECONFIG is not set and ${home} does not exist), and not in a pod (KUBERNETES_SERVICE_HOST is not set)`);
      }
      kc.loadFromDefault();
    }
    if (!kc.getCurrentCluster()) throw new Error('no current cluster (set current-context)');
  } catch (err) {
    throw new RegistryKubeconfigError(source, err);
  }
  return kc;
}

interface Store<T> {
  readonly kind: Kind;
  readonly objects: Map<string, T>;
}

export class KubernetesRegistry implements Registry {
  readonly description: string;
  private readonly kc: KubeConfig;
  private readonly namespaces: readonly string[];
  private readonly syncTimeoutMs: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly services: Store<V1Service> = { kind: 'Service', objects: new Map() };
  private readonly slices: Store<V1EndpointSlice> = { kind: 'EndpointSlice', objects: new Map() };
  private readonly pods: Store<V1Pod> = { kind: 'Pod', objects: new Map() };
  private readonly peerAuthentications: PolicyStore = { kind: 'PeerAuthentication', objects: new Map() };
  private readonly authorizationPolicies: PolicyStore = { kind: 'AuthorizationPolicy', objects: new Map() };
  private readonly crdRecheckMs: number;
  private readonly listPageSize: number;
  private readonly missingLogged = new Set<PolicyKind>();
  /** Last problem reported per invalid object (`<Kind> <ns>/<name>`), so a resync does not repeat it. */
  private readonly invalidReported = new Map<string, string>();
  private readonly feeds: Feed[] = [];
  private current: RegistryState = EMPTY_STATE;
  private readonly changes = new Listeners<RegistryChange>();
  private readonly problems = new Listeners<RegistryProblem>();
  private flushScheduled = false;
  private started = false;
  private stopped = false;
  private lastError: string | undefined;

  constructor(options: KubernetesRegistryOptions = {}) {
    this.kc = options.kubeConfig ?? loadKubeConfig(options.kubeconfig);
    this.namespaces = options.namespaces?.filter(Boolean) ?? [];
    this.syncTimeoutMs = options.syncTimeoutMs ?? 60_000;
    this.backoffInitialMs = options.backoffInitialMs ?? 500;
    this.backoffMaxMs = options.backoffMaxMs ?? 30_000;
    this.crdRecheckMs = options.crdRecheckMs ?? 60_000;
    this.listPageSize = options.listPageSize ?? DEFAULT_LIST_PAGE_SIZE;
    this.description = `kubernetes:${this.kc.getCurrentCluster()?.server ?? '?'}${this.namespaces.length ? ` namespaces=${this.namespaces.join(',')}` : ''}`;
  }

  async start(): Promise<void> {
    const core = this.kc.makeApiClient(CoreV1Api);
    const discovery = this.kc.makeApiClient(DiscoveryV1Api);
    const custom = this.kc.makeApiClient(CustomObjectsApi);
    const scopes: (string | undefined)[] = this.namespaces.length ? [...this.namespaces] : [undefined];
    for (const ns of scopes) {
      const where = ns ? `/namespaces/${ns}` : '';
      const label = ns ? `namespace ${ns}` : 'all namespaces';
      this.addFeed(`services (${label})`, `/api/v1${where}/services`, this.services,
        (page) => (ns ? core.listNamespacedService({ ...page, namespace: ns }) : core.listServiceForAllNamespaces(page)));
      this.addFeed(`endpointslices (${label})`, `/apis/discovery.k8s.io/v1${where}/endpointslices`, this.slices,
        (page) => (ns ? discovery.listNamespacedEndpointSlice({ ...page, namespace: ns }) : discovery.listEndpointSliceForAllNamespaces(page)));
      this.addFeed(`pods (${label})`, `/api/v1${where}/pods`, this.pods,
        (page) => (ns ? core.listNamespacedPod({ ...page, namespace: ns }) : core.listPodForAllNamespaces(page)));
    }
    // Policies: the same namespaces, plus skein-system (its namespace-wide policies apply to the whole mesh).
    const policyScopes = this.namespaces.length ? [...new Set([...this.namespaces, MESH_POLICY_NAMESPACE])] : [undefined];
    for (const ns of policyScopes) {
      const where = ns ? `/namespaces/${ns}` : '';
      const label = ns ? `namespace ${ns}` : 'all namespaces';
      for (const store of [this.peerAuthentications, this.authorizationPolicies]) {
        const plural = POLICY_PLURALS[store.kind];
        const base = { group: POLICY_GROUP, version: POLICY_VERSION };
        const list: ListFn = (page) =>
          (ns
            ? custom.listNamespacedCustomObject({ ...base, ...page, namespace: ns, plural })
            : custom.listCustomObjectForAllNamespaces({ ...base, ...page, resourcePlural: plural })) as Promise<KubernetesListObject<KubernetesObject>>;
        this.addPolicyFeed(`${plural} (${label})`, `/apis/${POLICY_GROUP}/${POLICY_VERSION}${where}/${plural}`, store, ns, list);
      }
    }
    for (const feed of this.feeds) this.run(feed);
    let timeout: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timeout = setTimeout(() => {
        const pending = this.feeds.filter((f) => !f.isSynced).map((f) => f.name);
        reject(new RegistrySyncTimeoutError(this.kc.getCurrentCluster()?.server ?? '?', pending, this.syncTimeoutMs, this.lastError));
      }, this.syncTimeoutMs);
    });
    try {
      await Promise.race([Promise.all(this.feeds.map((f) => f.synced)), timedOut]);
    } catch (err) {
      await this.stop();
      throw err;
    } finally {
      clearTimeout(timeout);
    }
    this.started = true;
    this.current = this.build();
    log.info('kubernetes registry synced', { services: this.current.services.size, server: this.description });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const feed of this.feeds) {
      clearTimeout(feed.timer);
      await feed.informer.stop();
    }
  }

  state(): RegistryState {
    return this.current;
  }

  subscribe(listener: RegistryListener): () => void {
    return this.changes.add(listener);
  }

  onProblem(listener: (problem: RegistryProblem) => void): () => void {
    return this.problems.add(listener);
  }

  private addFeed<T extends V1Service | V1EndpointSlice | V1Pod>(
    name: string,
    path: string,
    store: Store<T>,
    list: ListFn,
  ): void {
    const feed = new Feed(this.kc, name, path, list, this.listPageSize);
    const upsert = (obj: KubernetesObject): void => {
      feed.attempts = 0;
      // The API server enforces its own limits; an object past them (another server, an old one) is refused as an
      // invalid policy is: its last valid version stays, and the problem is reported.
      const errors: string[] = [];
      const tooLarge = annotationSizeProblem(obj.metadata?.annotations);
      if (tooLarge) errors.push(`metadata.annotations: ${tooLarge}`);
      // A Pod's skein.dev/inbound-port is checked as in the file: a typo must not make its callers skip its sidecar.
      if (store.kind === 'Pod') checkPod(obj as unknown as Record<string, unknown>, (path, msg) => void errors.push(`${path}: ${msg}`));
      if (this.refuse(store.kind, objectKey(obj), errors, store.objects.has(objectKey(obj)))) return;
      const next = normalize<T>(store.kind, obj);
      const key = objectKey(next);
      const prev = store.objects.get(key);
      if (reuse(prev, next) === prev) return; // same content (e.g. a Pod status update we trimmed away)
      store.objects.set(key, next);
      this.schedule();
    };
    feed.informer.on('add', upsert);
    feed.informer.on('update', upsert);
    feed.informer.on('delete', (obj) => {
      feed.attempts = 0;
      this.invalidReported.delete(`${store.kind} ${objectKey(obj as T)}`);
      if (store.objects.delete(objectKey(obj as T))) this.schedule();
    });
    feed.informer.on('error', (err: unknown) => this.failed(feed, err));
    this.feeds.push(feed);
  }

  private addPolicyFeed(name: string, path: string, store: PolicyStore, namespace: string | undefined, list: ListFn): void {
    // Its informer is made (and its handlers attached) by probe(), once the CRD is known to exist.
    this.feeds.push(new Feed(this.kc, name, path, list, this.listPageSize, { kind: store.kind, store, namespace }));
  }

  /**
   * With problems, reports an object as invalid (once per distinct problem; warn and a registry problem) and says
   * to leave the store alone: its last valid version stays in force, or it is ignored. Without, clears the report.
   */
  private refuse(kind: Kind | PolicyKind, key: string, errors: readonly string[], hasValid: boolean): boolean {
    const reportKey = `${kind} ${key}`;
    if (errors.length === 0) {
      this.invalidReported.delete(reportKey);
      return false;
    }
    const kept = hasValid ? 'its last valid version stays in force' : 'it is ignored';
    const message = `kubernetes ${reportKey}: ${errors.join('; ')}; ${kept} until it is fixed`;
    if (this.invalidReported.get(reportKey) !== message) {
      this.invalidReported.set(reportKey, message);
      const policy = kind === 'PeerAuthentication' || kind === 'AuthorizationPolicy';
      log.warn(policy ? 'invalid policy' : 'invalid object', { [policy ? 'policy' : 'object']: reportKey, problems: errors.length, problem: errors[0] });
      this.problems.emit({ code: PROBLEM_INVALID, message });
    }
    return true;
  }

  /** Handlers of a policy informer: validated like the registry file; an invalid object keeps its last good version. */
  private attach(feed: Feed, informer: Informer<KubernetesObject>): void {
    const crd = feed.crd;
    if (!crd) return;
    const upsert = (obj: KubernetesObject): void => {
      feed.attempts = 0;
      const key = objectKey(obj);
      const errors: string[] = [];
      const err = (path: string, msg: string): void => void errors.push(`${path}: ${msg}`);
      const raw = obj as unknown as Record<string, unknown>;
      if (crd.kind === 'PeerAuthentication') checkPeerAuthentication(raw, err);
      else checkAuthorizationPolicy(raw, err);
      const tooLarge = annotationSizeProblem(obj.metadata?.annotations);
      if (tooLarge) err('metadata.annotations', tooLarge);
      if (this.refuse(crd.kind, key, errors, crd.store.objects.has(key))) return;
      const next = normalizePolicy(crd.kind, obj);
      const prev = crd.store.objects.get(key);
      if (reuse(prev, next) === prev) return;
      crd.store.objects.set(key, next);
      this.schedule();
    };
    informer.on('add', upsert);
    informer.on('update', upsert);
    informer.on('delete', (obj) => {
      feed.attempts = 0;
      const key = objectKey(obj);
      this.invalidReported.delete(`${crd.kind} ${key}`);
      if (crd.store.objects.delete(key)) this.schedule();
    });
    informer.on('error', (err: unknown) => this.failed(feed, err));
  }

  /**
   * A CRD feed lists once to learn whether the CRD is installed. Installed: a fresh informer starts from that list
   * (objects gone meanwhile are dropped first). Not installed (404): no policies of that kind, logged once, looked
   * for again every crdRecheckMs; start() does not wait for it.
   */
  private async probe(feed: Feed): Promise<void> {
    const crd = feed.crd;
    if (!crd) return;
    let listed: KubernetesListObject<KubernetesObject>;
    try {
      listed = await feed.list();
    } catch (err) {
      if (this.stopped) return;
      if (!isNotFound(err)) return this.failed(feed, err);
      feed.missing = true;
      feed.attempts = 0;
      if (!this.missingLogged.has(crd.kind)) {
        this.missingLogged.add(crd.kind);
        log.warn('policy CRD not installed; treating it as empty (apply deploy/crds.yaml to use it)', {
          crd: `${POLICY_PLURALS[crd.kind]}.${POLICY_GROUP}`,
          recheckMs: this.crdRecheckMs,
        });
      }
      this.dropPolicies(feed, new Set());
      feed.setSynced();
      clearTimeout(feed.timer);
      feed.timer = setTimeout(() => this.run(feed), this.crdRecheckMs);
      return;
    }
    if (this.stopped) return;
    if (feed.missing) log.info('policy CRD found', { crd: `${POLICY_PLURALS[crd.kind]}.${POLICY_GROUP}` });
    feed.missing = false;
    this.dropPolicies(feed, new Set((listed.items ?? []).map((o) => objectKey(o))));
    const informer = await feed.renew();
    if (this.stopped) return;
    this.attach(feed, informer);
    feed.primed = listed;
    informer.start().catch((err: unknown) => this.failed(feed, err));
  }

  /** Removes the feed's policies (those of its namespace, when it has one) that are not in `keep`. */
  private dropPolicies(feed: Feed, keep: ReadonlySet<string>): void {
    const crd = feed.crd;
    if (!crd) return;
    const prefix = crd.namespace === undefined ? '' : `${crd.namespace}/`;
    for (const key of [...crd.store.objects.keys()]) {
      if (key.startsWith(prefix) && !keep.has(key) && crd.store.objects.delete(key)) this.schedule();
    }
  }

  /** Starts (or restarts) an informer; it resumes its watch from its last resourceVersion, relisting on 410. */
  private run(feed: Feed): void {
    if (this.stopped) return;
    if (feed.crd) {
      void this.probe(feed);
      return;
    }
    feed.informer.start().catch((err: unknown) => this.failed(feed, err));
  }

  /** client-node's informer stops on a list or watch error: restart it with exponential backoff and jitter. */
  private failed(feed: Feed, err: unknown): void {
    if (this.stopped) return;
    if (feed.crd && isNotFound(err)) {
      // The CRD went away while watched: probe now (it empties the store and looks again later).
      clearTimeout(feed.timer);
      feed.timer = setTimeout(() => this.run(feed), 0);
      return;
    }
    const delayCap = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** feed.attempts);
    const delay = Math.round(delayCap / 2 + (Math.random() * delayCap) / 2);
    feed.attempts += 1;
    const reason = describe(err);
    this.lastError = `${feed.name}: ${reason}`;
    const message = `kubernetes ${feed.name}: list/watch failed (${reason}); retrying in ${delay} ms, serving the last good state`;
    log.warn('kubernetes watch failed', { feed: feed.name, error: reason, retryMs: delay });
    this.problems.emit({ code: PROBLEM_WATCH, message });
    clearTimeout(feed.timer);
    feed.timer = setTimeout(() => this.run(feed), delay);
  }

  private schedule(): void {
    if (this.flushScheduled || !this.started) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.stopped) return;
      const before = this.current;
      const next = this.build();
      const changed = diffStates(before, next);
      this.current = next;
      if (changed.size > 0) {
        log.debug('registry change', { changed: [...changed] });
        this.changes.emit({ state: next, changed });
      }
    });
  }

  private build(): RegistryState {
    return buildState(this.services.objects.values(), this.slices.objects.values(), this.pods.objects.values(), [
      ...this.peerAuthentications.objects.values(),
      ...this.authorizationPolicies.objects.values(),
    ]);
  }
}

function describe(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; statusCode?: unknown; message?: unknown; body?: unknown; cause?: { message?: unknown } };
    const code = e.statusCode ?? (typeof e.code === 'number' ? e.code : undefined);
    let body = e.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        // not a Status object
      }
    }
    const status = body && typeof body === 'object' ? (body as { message?: unknown }).message : undefined;
    const msg = typeof status === 'string' ? status : typeof e.message === 'string' ? e.message.split('\n')[0] : String(err);
    const cause = typeof e.cause?.message === 'string' ? ` (${e.cause.message})` : '';
    return `${code ? `HTTP ${String(code)}: ` : ''}${msg}${cause}`;
  }
  return String(err);
}
