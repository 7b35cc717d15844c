// KubernetesRegistry: Services, EndpointSlices and Pods from the API server through client-node informers (list+watch).
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type Informer,
  makeInformer,
  type V1EndpointSlice,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { logger } from '../log.ts';
import { PROBLEM_WATCH, RegistryKubeconfigError, RegistrySyncTimeoutError } from './errors.ts';
import { Listeners, buildState, normalize, objectKey, reuse, type Kind } from './objects.ts';
import type { Registry, RegistryChange, RegistryListener, RegistryProblem, RegistryState } from './registry.ts';
import { EMPTY_STATE, diffStates } from './registry.ts';

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
}

/** Loads client configuration: an explicit file, in-cluster service account, or the default kubeconfig. */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  const source = file ? `kubeconfig ${file}` : process.env.KUBERNETES_SERVICE_HOST ? 'the in-cluster service account' : 'the default kubeconfig';
  try {
    if (file) kc.loadFromFile(file);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
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

/** One informer with its own restart backoff; `synced` resolves after its first successful list was applied. */
class Feed {
  readonly name: string;
  readonly informer: Informer<KubernetesObject>;
  readonly synced: Promise<void>;
  private markSynced!: () => void;
  isSynced = false;
  attempts = 0;
  timer: NodeJS.Timeout | undefined;

  constructor(kc: KubeConfig, name: string, path: string, list: () => Promise<KubernetesListObject<KubernetesObject>>) {
    this.name = name;
    this.synced = new Promise((resolve) => (this.markSynced = resolve));
    const listed = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const result = await list();
      this.attempts = 0;
      // The informer applies the items right after this promise settles; the state is built on a later tick.
      if (!this.isSynced) setImmediate(() => ((this.isSynced = true), this.markSynced()));
      return result;
    };
    this.informer = makeInformer(kc, path, listed);
  }
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
    this.description = `kubernetes:${this.kc.getCurrentCluster()?.server ?? '?'}${this.namespaces.length ? ` namespaces=${this.namespaces.join(',')}` : ''}`;
  }

  async start(): Promise<void> {
    const core = this.kc.makeApiClient(CoreV1Api);
    const discovery = this.kc.makeApiClient(DiscoveryV1Api);
    const scopes: (string | undefined)[] = this.namespaces.length ? [...this.namespaces] : [undefined];
    for (const ns of scopes) {
      const where = ns ? `/namespaces/${ns}` : '';
      const label = ns ? `namespace ${ns}` : 'all namespaces';
      this.addFeed(`services (${label})`, `/api/v1${where}/services`, this.services,
        () => (ns ? core.listNamespacedService({ namespace: ns }) : core.listServiceForAllNamespaces()));
      this.addFeed(`endpointslices (${label})`, `/apis/discovery.k8s.io/v1${where}/endpointslices`, this.slices,
        () => (ns ? discovery.listNamespacedEndpointSlice({ namespace: ns }) : discovery.listEndpointSliceForAllNamespaces()));
      this.addFeed(`pods (${label})`, `/api/v1${where}/pods`, this.pods,
        () => (ns ? core.listNamespacedPod({ namespace: ns }) : core.listPodForAllNamespaces()));
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
    list: () => Promise<KubernetesListObject<KubernetesObject>>,
  ): void {
    const feed = new Feed(this.kc, name, path, list);
    const upsert = (obj: KubernetesObject): void => {
      feed.attempts = 0;
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
      if (store.objects.delete(objectKey(obj as T))) this.schedule();
    });
    feed.informer.on('error', (err: unknown) => this.failed(feed, err));
    this.feeds.push(feed);
  }

  /** Starts (or restarts) an informer; it resumes its watch from its last resourceVersion, relisting on 410. */
  private run(feed: Feed): void {
    if (this.stopped) return;
    feed.informer.start().catch((err: unknown) => this.failed(feed, err));
  }

  /** client-node's informer stops on a list or watch error: restart it with exponential backoff and jitter. */
  private failed(feed: Feed, err: unknown): void {
    if (this.stopped) return;
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
    return buildState(this.services.objects.values(), this.slices.objects.values(), this.pods.objects.values());
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
