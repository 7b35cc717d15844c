// A fake Kubernetes API server over real HTTP: list (paginated too) and watch (resourceVersions, bookmarks, 410 Gone).
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The resources the fake serves, by their URL plural (the last two are skein.dev/v1 custom resources). */
export type Resource = 'services' | 'pods' | 'endpointslices' | 'peerauthentications' | 'authorizationpolicies';
export type Kind = 'Service' | 'Pod' | 'EndpointSlice' | 'PeerAuthentication' | 'AuthorizationPolicy';
const CUSTOM: ReadonlySet<Resource> = new Set(['peerauthentications', 'authorizationpolicies']);

interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown };
  [k: string]: unknown;
}

interface WatchEvent {
  readonly rv: number;
  readonly resource: Resource;
  readonly namespace: string;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: KubeObject;
}

interface Watcher {
  readonly resource: Resource;
  readonly namespace: string | undefined;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
  readonly req: IncomingMessage;
}

export interface RequestRecord {
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly watch: boolean;
  /** Set when a watch (ERROR event) or a list's continue token was answered 410: the client must relist. */
  gone?: boolean;
}

/** A paginated list in progress: the items as they were when its first page was served, in key order. */
interface ListSnapshot {
  readonly rv: number;
  readonly items: readonly KubeObject[];
}

const TYPES: Record<Resource, { group: string; apiVersion: string; kind: string }> = {
  services: { group: '/api/v1', apiVersion: 'v1', kind: 'Service' },
  pods: { group: '/api/v1', apiVersion: 'v1', kind: 'Pod' },
  endpointslices: { group: '/apis/discovery.k8s.io/v1', apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' },
  peerauthentications: { group: '/apis/skein.dev/v1', apiVersion: 'skein.dev/v1', kind: 'PeerAuthentication' },
  authorizationpolicies: { group: '/apis/skein.dev/v1', apiVersion: 'skein.dev/v1', kind: 'AuthorizationPolicy' },
};
const RESOURCE_OF_KIND: Record<string, Resource> = {
  Service: 'services',
  Pod: 'pods',
  EndpointSlice: 'endpointslices',
  PeerAuthentication: 'peerauthentications',
  AuthorizationPolicy: 'authorizationpolicies',
};
const PATH =
  /^\/(?:api\/v1|apis\/discovery\.k8s\.io\/v1|apis\/skein\.dev\/v1)(?:\/namespaces\/([^/]+))?\/(services|pods|endpointslices|peerauthentications|authorizationpolicies)$/;

const clone = <T>(v: T): T => structuredClone(v);

function status(code: number, reason: string, message: string): KubeObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/**
 * Serves GET list (`{kind: XList, metadata: {resourceVersion}, items}`, items without kind/apiVersion like the real
 * server) and `?watch=true` streams of newline-delimited JSON events from one global resourceVersion counter.
 * A watch from a resourceVersion older than the retained history gets an ERROR event with a 410 Status and the
 * stream ends, as on a real API server after etcd compaction.
 */
export class FakeKubeApiServer {
  readonly requests: RequestRecord[] = [];
  private readonly server: Server;
  private readonly objects = new Map<Resource, Map<string, KubeObject>>();
  private history: WatchEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private rv = 100;
  /** The oldest resourceVersion a watch may start from. */
  private oldest = 100;
  private unavailable = false;
  /** Whether the skein.dev CRDs are installed; without them their URLs answer 404 like a real server. */
  private crds = true;
  /** Paginated lists by the resourceVersion of their first page (dropped when history is compacted). */
  private snapshots = new Map<string, ListSnapshot>();
  /** Called with each list request's query before it is answered (tests change the server between pages). */
  onList: ((resource: Resource, query: Readonly<Record<string, string>>) => void) | undefined;

  private constructor(server: Server) {
    this.server = server;
    for (const r of Object.keys(TYPES) as Resource[]) this.objects.set(r, new Map());
  }

  static async start(): Promise<FakeKubeApiServer> {
    const server = createServer();
    const fake = new FakeKubeApiServer(server);
    server.on('request', (req, res) => fake.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** A kubeconfig for this server (plain HTTP, no credentials). */
  kubeconfig(): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `  - name: fake\n    cluster:\n      server: ${this.url}\n      insecure-skip-tls-verify: true`,
      'users:',
      '  - name: fake\n    user: {}',
      'contexts:',
      '  - name: fake\n    context:\n      cluster: fake\n      user: fake\n      namespace: default',
      'current-context: fake',
      '',
    ].join('\n');
  }

  async writeKubeconfig(path: string): Promise<string> {
    await writeFile(path, this.kubeconfig(), { mode: 0o600 });
    return path;
  }

  /**
   * Installs or removes the skein.dev CRDs. Removing them deletes their objects (with DELETED events) and ends their
   * watches; from then on their list and watch URLs answer 404 until they are installed again.
   */
  setCrdsInstalled(installed: boolean): void {
    if (installed === this.crds) return;
    if (!installed) {
      for (const resource of CUSTOM) {
        for (const obj of [...this.objects.get(resource)!.values()]) this.delete(obj.kind as Kind, obj.metadata?.namespace ?? 'default', obj.metadata?.name ?? '');
      }
      for (const w of [...this.watchers]) {
        if (!CUSTOM.has(w.resource)) continue;
        this.watchers.delete(w);
        w.res.end();
      }
    }
    this.crds = installed;
  }

  /** Creates an object (kind Service, Pod, EndpointSlice, PeerAuthentication or AuthorizationPolicy); returns the stored copy. */
  create(obj: KubeObject): KubeObject {
    const { resource, key } = this.locate(obj);
    if (this.objects.get(resource)!.has(key)) throw new Error(`fake apiserver: ${obj.kind} ${key} already exists`);
    const stored = this.store(resource, obj, randomUUID());
    this.record(resource, 'ADDED', stored);
    return clone(stored);
  }

  /** Replaces an existing object; returns the stored copy. */
  update(obj: KubeObject): KubeObject {
    const { resource, key } = this.locate(obj);
    const old = this.objects.get(resource)!.get(key);
    if (!old) throw new Error(`fake apiserver: ${obj.kind} ${key} not found`);
    const stored = this.store(resource, obj, old.metadata?.uid ?? randomUUID());
    this.record(resource, 'MODIFIED', stored);
    return clone(stored);
  }

  /** Creates or updates. */
  apply(obj: KubeObject): KubeObject {
    const { resource, key } = this.locate(obj);
    return this.objects.get(resource)!.has(key) ? this.update(obj) : this.create(obj);
  }

  delete(kind: Kind, namespace: string, name: string): void {
    const resource = RESOURCE_OF_KIND[kind]!;
    const map = this.objects.get(resource)!;
    const old = map.get(`${namespace}/${name}`);
    if (!old) throw new Error(`fake apiserver: ${kind} ${namespace}/${name} not found`);
    map.delete(`${namespace}/${name}`);
    const gone = clone(old);
    gone.metadata!.resourceVersion = String(++this.rv);
    this.record(resource, 'DELETED', gone);
  }

  /** Compacts the event history: every watch from a resourceVersion up to now gets 410 Gone (clients must relist). */
  expireHistory(): void {
    this.rv += 1; // as if other writes happened since, so no client's last resourceVersion is still current
    this.oldest = this.rv;
    this.history = [];
    this.snapshots.clear(); // continue tokens of lists begun before now answer 410 Expired
  }

  /** Ends every open watch: `abrupt` destroys the sockets (a network failure), else the streams end cleanly. */
  dropWatches(options: { abrupt?: boolean } = {}): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      if (options.abrupt) w.req.socket.destroy();
      else w.res.end();
    }
    return n;
  }

  /** Sends a BOOKMARK with the current resourceVersion to watches that asked for bookmarks. */
  sendBookmarks(): number {
    let n = 0;
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const { apiVersion, kind } = TYPES[w.resource];
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind, apiVersion, metadata: { resourceVersion: String(this.rv) } } })}\n`);
      n += 1;
    }
    return n;
  }

  /** While unavailable, every request is answered 503 (and open watches are cut), like an API server restarting. */
  setUnavailable(unavailable: boolean): void {
    this.unavailable = unavailable;
    if (unavailable) this.dropWatches({ abrupt: true });
  }

  /** Open watch streams, optionally for one resource. */
  openWatches(resource?: Resource): number {
    return [...this.watchers].filter((w) => !resource || w.resource === resource).length;
  }

  /** How many watches were answered 410 Gone. */
  goneCount(): number {
    return this.requests.filter((r) => r.gone).length;
  }

  /** How many list (non-watch) requests hit a resource. */
  listCount(resource: Resource): number {
    return this.requests.filter((r) => !r.watch && r.path.endsWith(`/${resource}`)).length;
  }

  async close(): Promise<void> {
    this.dropWatches({ abrupt: true });
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private locate(obj: KubeObject): { resource: Resource; key: string } {
    const resource = obj.kind ? RESOURCE_OF_KIND[obj.kind] : undefined;
    if (!resource) throw new Error(`fake apiserver: unsupported kind ${String(obj.kind)}`);
    if (!obj.metadata?.name) throw new Error('fake apiserver: metadata.name is required');
    if (CUSTOM.has(resource) && !this.crds) throw new Error(`fake apiserver: the CRD for ${String(obj.kind)} is not installed`);
    return { resource, key: `${obj.metadata.namespace ?? 'default'}/${obj.metadata.name}` };
  }

  private store(resource: Resource, obj: KubeObject, uid: string): KubeObject {
    const { apiVersion, kind } = TYPES[resource];
    const stored: KubeObject = clone({ ...obj, apiVersion, kind });
    stored.metadata = {
      creationTimestamp: new Date(0).toISOString(),
      ...stored.metadata,
      namespace: obj.metadata?.namespace ?? 'default',
      uid,
      resourceVersion: String(++this.rv),
    };
    this.objects.get(resource)!.set(`${stored.metadata.namespace}/${stored.metadata.name}`, stored);
    return stored;
  }

  private record(resource: Resource, type: WatchEvent['type'], object: KubeObject): void {
    const event: WatchEvent = { rv: this.rv, resource, namespace: object.metadata?.namespace ?? 'default', type, object: clone(object) };
    this.history.push(event);
    for (const w of this.watchers) if (matches(w, event)) send(w.res, event);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    const watch = query.watch === 'true' || query.watch === '1';
    const record: RequestRecord = { path: url.pathname, query, watch };
    this.requests.push(record);
    const m = PATH.exec(url.pathname);
    const resource = m?.[2] as Resource | undefined;
    const namespace = m?.[1];
    const reply = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (this.unavailable) return reply(503, status(503, 'ServiceUnavailable', 'the server is currently unable to handle the request'));
    if (req.method !== 'GET') return reply(405, status(405, 'MethodNotAllowed', `${req.method} is not supported by the fake`));
    if (!resource || (m && !url.pathname.startsWith(TYPES[resource].group)) || (CUSTOM.has(resource) && !this.crds)) {
      return reply(404, status(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
    }
    if (!watch) {
      this.onList?.(resource, query);
      const listed = this.list(resource, namespace, query);
      if ('code' in listed) record.gone = true;
      return reply('code' in listed ? Number(listed.code) : 200, listed);
    }

    const from = query.resourceVersion;
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // the real server answers a watch at once; clients wait for headers before reading events
    const watcher: Watcher = { resource, namespace, bookmarks: query.allowWatchBookmarks === 'true', res, req };
    if (from && from !== '0' && Number(from) < this.oldest) {
      const gone = status(410, 'Expired', `too old resource version: ${from} (${this.oldest})`);
      record.gone = true;
      res.end(`${JSON.stringify({ type: 'ERROR', object: gone })}\n`);
      return;
    }
    if (!from || from === '0') {
      // "Any" resourceVersion: synthetic ADDED events for the current state, then changes.
      for (const obj of this.objects.get(resource)!.values()) {
        const event: WatchEvent = { rv: Number(obj.metadata?.resourceVersion), resource, namespace: obj.metadata?.namespace ?? 'default', type: 'ADDED', object: obj };
        if (matches(watcher, event)) send(res, event);
      }
    } else {
      for (const event of this.history) if (event.rv > Number(from) && matches(watcher, event)) send(res, event);
    }
    this.watchers.add(watcher);
    const timeout = Number(query.timeoutSeconds);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.on('close', () => {
      clearTimeout(timer);
      this.watchers.delete(watcher);
    });
  }

  /**
   * A list in key order (namespace, then name, as etcd returns it). With `limit`, one page and a `continue` token while
   * more remain; every page comes from the snapshot taken at the first, as the real server reads etcd at one revision.
   * A token whose snapshot was compacted answers 410 Expired.
   */
  private list(resource: Resource, namespace: string | undefined, query: Readonly<Record<string, string>>): KubeObject {
    const { apiVersion, kind } = TYPES[resource];
    const limit = Number(query.limit);
    let snapshot: ListSnapshot;
    let start = '';
    if (query.continue) {
      let token: { rv?: number; start?: string; scope?: string };
      try {
        token = JSON.parse(Buffer.from(query.continue, 'base64').toString('utf8')) as typeof token;
      } catch {
        return status(400, 'BadRequest', 'continue key is not valid: not base64-encoded JSON');
      }
      const found = this.snapshots.get(`${token.scope}@${token.rv}`);
      if (!found || token.scope !== `${resource}/${namespace ?? ''}`) {
        return status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      }
      snapshot = found;
      start = token.start ?? '';
    } else {
      const items = [...this.objects.get(resource)!.entries()]
        .filter(([, o]) => !namespace || o.metadata?.namespace === namespace)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, { apiVersion: _a, kind: _k, ...rest }]) => rest); // stored objects are replaced, never changed in place
      snapshot = { rv: this.rv, items };
    }
    const key = (o: KubeObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
    const rest = start ? snapshot.items.filter((o) => key(o) > start) : snapshot.items;
    const page = limit > 0 ? rest.slice(0, limit) : rest;
    const metadata: Record<string, unknown> = { resourceVersion: String(snapshot.rv) };
    const scope = `${resource}/${namespace ?? ''}`;
    if (page.length === rest.length) this.snapshots.delete(`${scope}@${snapshot.rv}`);
    else {
      this.snapshots.set(`${scope}@${snapshot.rv}`, snapshot);
      metadata.continue = Buffer.from(JSON.stringify({ rv: snapshot.rv, start: key(page.at(-1)!), scope })).toString('base64');
      metadata.remainingItemCount = rest.length - page.length;
    }
    return { kind: `${kind}List`, apiVersion, metadata, items: page };
  }
}

function matches(w: Watcher, e: WatchEvent): boolean {
  return w.resource === e.resource && (!w.namespace || w.namespace === e.namespace);
}

function send(res: ServerResponse, e: WatchEvent): void {
  res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
}
