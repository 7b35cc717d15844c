// The snapshot cache: coalesces registry changes, retranslates only changed Services, publishes immutable snapshots.
import type { TypeUrl } from '../../proto/index.ts';
import { TYPE_URL } from '../../proto/index.ts';
import { type Logger, logger } from '../log.ts';
import type { RegistryListener, RegistryState, ServiceKey } from '../registry/registry.ts';
import { dedupeProblems } from '../translate/assemble.ts';
import type { TranslateOptions, TranslationProblem } from '../translate/build.ts';
import { envoyScope, namespaceOfScope, outboundRouteName, PROXYLESS_SCOPE } from '../translate/names.ts';
import type { BuildResult, BuildState, Translate } from './builder.ts';
import { applyChanges, applyChangesSteps, EMPTY_BUILD } from './builder.ts';
import { DEFAULT_SLICE_MS, runNow, runSliced, slicedPromise } from '../slices.ts';
import { checkSnapshot, checkSnapshotSteps } from './consistency.ts';
import { scopeOfNode } from './scope.ts';
import type { ResourcesByName, ScopeKey, ScopeResources, Snapshot, SnapshotCache } from './snapshot.ts';

/** What the cache needs from a registry. */
export interface SnapshotSource {
  state(): RegistryState;
  subscribe(listener: RegistryListener): () => void;
}

export interface CacheOptions extends TranslateOptions {
  /**
   * The coalescing window (default 100 ms). Leading edge (the default): a change after a quiet window is published
   * at once, and changes that follow within the window are coalesced into one publish at its end. Trailing edge:
   * every publish waits this long after the first change of a burst.
   */
  readonly debounceMs?: number;
  /** Default true: publish a change that follows a quiet window immediately (see debounceMs). */
  readonly leadingEdge?: boolean;
  /** At least this long between two publishes (default: debounceMs). */
  readonly minIntervalMs?: number;
  /** Never hold a change longer than this (default 1000 ms). */
  readonly maxDelayMs?: number;
  /**
   * A large build (thousands of Services changed) runs in slices of this long, with an event-loop turn between
   * them (ms; see slices.ts). flush() always builds at once; the first snapshot too unless `sliceInitial`.
   */
  readonly sliceMs?: number;
  /**
   * Build the first snapshot in slices too (the control plane: 25 s at 30 000 Services, during which its admin
   * server must keep answering health checks). Until it is published, current() is an empty snapshot with serial 0
   * and whenBuilt() is pending; nothing may ask for a scope (serve xDS) before whenBuilt() resolves.
   */
  readonly sliceInitial?: boolean;
  /** The translation function (tests inject faulty ones to exercise the consistency check). */
  readonly translate?: Translate;
  readonly log?: Logger;
}

export interface PublishStats {
  readonly serial: number;
  /** performance.now() of the earliest change folded into the snapshot. */
  readonly changedAt: number;
  readonly publishedAt: number;
  /** Time spent translating, encoding and checking. */
  readonly buildMs: number;
  /** Services retranslated for this publish. */
  readonly translated: number;
}

export interface ControlPlaneCache extends SnapshotCache {
  /** Per Service, what could not be translated (bad annotations, unknown route targets, duplicate names). */
  translationProblems(): ReadonlyMap<ServiceKey, readonly TranslationProblem[]>;
  lastPublish(): PublishStats;
  /** Publishes pending changes now (in one go) instead of at the end of the debounce window; none while a sliced build runs. */
  flush(): void;
  /** Whether a build is running in slices (its snapshot is published when it ends). */
  building(): boolean;
  /** Resolves when the build running in slices (if any) has ended. */
  whenBuilt(): Promise<void>;
  /** Stops listening to the source and drops any pending change. */
  close(): void;
}

const EMPTY_SET: ReadonlySet<string> = Object.freeze(new Set<string>());

export function createSnapshotCache(source: SnapshotSource, options: CacheOptions = {}): ControlPlaneCache {
  const debounceMs = options.debounceMs ?? 100;
  const leadingEdge = options.leadingEdge ?? true;
  const minIntervalMs = options.minIntervalMs ?? debounceMs;
  const maxDelayMs = Math.max(options.maxDelayMs ?? 1000, debounceMs);
  const translate = options.translate;
  const log = options.log ?? logger('cache');
  const translateOptions: TranslateOptions = {
    clusterDomain: options.clusterDomain,
    connectTimeoutMs: options.connectTimeoutMs,
    trustDomain: options.trustDomain,
    holdEndpointsWithoutPod: options.holdEndpointsWithoutPod,
  };
  const listeners = new Set<(s: Snapshot) => void>();

  let build: BuildState = EMPTY_BUILD;
  let latest = source.state();
  let pending = new Set<ServiceKey>();
  /** Keys of a publish refused by the consistency check: retried with the next change. */
  let failed = new Set<ServiceKey>();
  let firstChangeAt: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  /** Set while a build runs in slices: no other build starts, changes wait in `pending`. */
  let inFlight: Promise<void> | undefined;
  /** Namespace → streams in its `envoy/<ns>` scope (scopeOf counts up, releaseScope down). */
  const held = new Map<string, number>();
  const isHeld = (ns: string): boolean => held.has(ns);
  /** Namespaces whose last stream left since the last build: dropped by the next one if they have no Services. */
  let released = new Set<string>();
  const sliceMs = options.sliceMs ?? DEFAULT_SLICE_MS;

  // The first snapshot: everything, checked whole.
  const start = performance.now();
  const initialState = latest;
  const initialSteps = applyChangesSteps(EMPTY_BUILD, initialState, initialState.services.keys(), translateOptions, translate);
  const initialRun = options.sliceInitial === true ? runSliced(initialSteps, sliceMs) : { done: true as const, value: runNow(initialSteps) };
  let snapshot: Snapshot;
  let stats: PublishStats;
  /** Publishes the first snapshot (serial 1: `candidate`, whose whole-snapshot check found `checked`), or an empty one if it is inconsistent. */
  function firstSnapshot(initial: BuildResult, candidate: Snapshot, checked: readonly string[]): void {
    snapshot = candidate;
    const initialProblems = [...initial.violations, ...checked];
    if (initialProblems.length > 0) {
      log.error('initial snapshot is inconsistent (a translation bug); serving an empty one', { problems: initialProblems });
      snapshot = makeSnapshot(undefined, applyChanges(EMPTY_BUILD, initialState, [], translateOptions, translate), start, 1);
    } else {
      build = initial.state;
    }
    stats = { serial: 1, changedAt: start, publishedAt: performance.now(), buildMs: performance.now() - start, translated: initial.translated };
  }
  if (initialRun.done) {
    const candidate = makeSnapshot(undefined, initialRun.value, start, 1);
    firstSnapshot(initialRun.value, candidate, checkSnapshot(candidate));
  } else {
    snapshot = makeSnapshot(undefined, applyChanges(EMPTY_BUILD, initialState, [], translateOptions, translate), start, 0);
    stats = { serial: 0, changedAt: start, publishedAt: start, buildMs: 0, translated: 0 };
    const running = (async () => {
      try {
        const initial = await initialRun.promise;
        const candidate = makeSnapshot(undefined, initial, start, 1);
        const checked = await slicedPromise(runSliced(checkSnapshotSteps(candidate), sliceMs));
        if (closed) return;
        firstSnapshot(initial, candidate, checked);
        notify(snapshot);
      } catch (err) {
        // A translation bug: start-up fails, as it does when the first snapshot is built at once.
        if (!closed) log.error('building the first snapshot failed (a translation bug)', { error: String(err) });
        throw err;
      } finally {
        inFlight = undefined;
      }
      schedule();
    })();
    // whenBuilt() gives the failure to whoever waits for it (the control plane's start-up); it is not unhandled.
    running.catch(() => {});
    inFlight = running;
  }

  const unsubscribe = source.subscribe((change) => {
    if (closed) return;
    latest = change.state;
    if (change.changed.size === 0) return;
    for (const key of change.changed) pending.add(key);
    for (const key of failed) pending.add(key);
    failed = new Set();
    firstChangeAt ??= Math.min(performance.now(), change.detectedAt ?? Number.POSITIVE_INFINITY);
    schedule();
  });

  function schedule(): void {
    if (timer || inFlight || firstChangeAt === undefined) return;
    // Leading edge: due as soon as the last publish is minIntervalMs old (at once after a quiet window; the
    // zero-delay timer still folds in changes emitted in the same tick).
    const due = leadingEdge ? stats.publishedAt + minIntervalMs : Math.max(firstChangeAt + debounceMs, stats.publishedAt + minIntervalMs);
    const at = Math.min(due, firstChangeAt + maxDelayMs);
    timer = setTimeout(() => publishPending(true), Math.max(0, at - performance.now()));
  }

  /**
   * Builds and publishes the pending changes. From the timer (`sliced`), a build that outlasts one slice goes on in
   * slices and publishes when it ends; changes arriving meanwhile wait for the next build, which starts from its
   * result (so none is lost and they are applied in order).
   */
  function publishPending(sliced = false): void {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (closed || (pending.size === 0 && released.size === 0) || inFlight) return;
    const keys = pending;
    const scopes = { held: isHeld, released };
    released = new Set();
    const changedAt = firstChangeAt ?? performance.now();
    pending = new Set();
    firstChangeAt = undefined;
    const t0 = performance.now();
    const base = build;
    const state = latest;
    const steps = applyChangesSteps(base, state, keys, translateOptions, translate, scopes);
    const run = sliced ? runSliced(steps, sliceMs) : { done: true as const, value: runNow(steps) };
    if (run.done) {
      finishBuild(run.value, keys, scopes.released, changedAt, t0);
      return;
    }
    inFlight = run.promise.then(
      (result) => {
        inFlight = undefined;
        if (closed) return;
        // A proxy of a new namespace connected meanwhile: its scope was published on the old build; add it to this one.
        // Or connected to a namespace whose scope this build dropped, after the build decided to: it stays.
        const added = build === base ? [] : [...build.namespaces.keys()].filter((ns) => !base.namespaces.has(ns));
        for (const ns of result.removedNamespaces) if (isHeld(ns) && !added.includes(ns)) added.push(ns);
        finishBuild(added.length > 0 ? withNamespaces(result, state, added) : result, keys, scopes.released, changedAt, t0);
        schedule();
      },
      (err: unknown) => {
        inFlight = undefined;
        if (closed) return;
        log.error('building a snapshot failed (a translation bug); keeping the previous snapshot', { error: String(err), services: keys.size });
        failed = keys; // retried with the next change, as an inconsistent build is
        for (const ns of scopes.released) released.add(ns);
        schedule();
      },
    );
  }

  /** The result of a sliced build with namespaces added (built at once: one route table each). */
  function withNamespaces(result: BuildResult, state: RegistryState, namespaces: readonly string[]): BuildResult {
    const more = applyChanges(result.state, state, [], translateOptions, translate, { add: namespaces });
    // Those scopes are in the published snapshot already: their route tables are sent again, as changed.
    return {
      ...result,
      state: more.state,
      routeTablesChanged: new Set([...result.routeTablesChanged, ...namespaces]),
      violations: [...result.violations, ...more.violations],
    };
  }

  function finishBuild(result: BuildResult, keys: Set<ServiceKey>, releasedNow: ReadonlySet<string>, changedAt: number, t0: number): void {
    if (result.violations.length > 0) {
      log.error('snapshot is inconsistent (a translation bug); keeping the previous snapshot', {
        services: [...keys],
        problems: result.violations,
      });
      failed = keys;
      for (const ns of releasedNow) released.add(ns); // dropped with the retry
      return;
    }
    publish(result, changedAt, t0);
  }

  function notify(published: Snapshot): void {
    for (const listener of [...listeners]) {
      try {
        listener(published);
      } catch (err) {
        log.error('snapshot listener failed', { error: String(err) });
      }
    }
  }

  function publish(result: BuildResult, changedAt: number, t0: number): void {
    build = result.state;
    snapshot = makeSnapshot(snapshot, result, changedAt, snapshot.serial + 1);
    const now = performance.now();
    stats = { serial: snapshot.serial, changedAt, publishedAt: now, buildMs: now - t0, translated: result.translated };
    notify(snapshot);
    if (log.debugEnabled) {
      log.debug('published', {
        serial: snapshot.serial,
        buildMs: stats.buildMs.toFixed(2),
        translated: result.translated,
        sinceChangeMs: (now - changedAt).toFixed(1),
        listenersMs: (performance.now() - now).toFixed(1),
      });
    }
  }

  return {
    current: () => snapshot,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    scopeOf(node) {
      // A scope published now would be built on nothing and then replaced by the first snapshot (see sliceInitial).
      if (snapshot.serial === 0) throw new Error('scopeOf() before the first snapshot: serve xDS only after whenBuilt()');
      const scope = scopeOfNode(node);
      const ns = namespaceOfScope(scope);
      if (ns === undefined) return scope;
      held.set(ns, (held.get(ns) ?? 0) + 1);
      if (snapshot.scopes.has(scope)) return scope;
      const t0 = performance.now();
      const result = applyChanges(build, latest, [], translateOptions, translate, { add: [ns] });
      if (result.violations.length > 0) {
        log.error('new scope is inconsistent (a translation bug)', { scope, problems: result.violations });
        return scope;
      }
      publish(result, t0, t0);
      return scope;
    },
    releaseScope(scope) {
      const ns = namespaceOfScope(scope);
      if (ns === undefined || !held.has(ns)) return;
      const n = (held.get(ns) ?? 0) - 1;
      if (n > 0) {
        held.set(ns, n);
        return;
      }
      held.delete(ns);
      // The last proxy of a namespace without Services left: its scope goes with the next publish.
      if (closed || (build.serviceCounts.get(ns) ?? 0) > 0 || !build.namespaces.has(ns)) return;
      released.add(ns);
      firstChangeAt ??= performance.now();
      schedule();
    },
    translationProblems() {
      const out = new Map<ServiceKey, TranslationProblem[]>();
      const all: TranslationProblem[] = [...build.tcpProblems];
      for (const s of build.services.values()) all.push(...s.res.problems);
      for (const ns of build.namespaces.values()) all.push(...ns.problems);
      for (const p of dedupeProblems(all)) {
        const list = out.get(p.service);
        if (list) list.push(p);
        else out.set(p.service, [p]);
      }
      return out;
    },
    lastPublish: () => stats,
    flush: () => publishPending(false),
    building: () => inFlight !== undefined,
    whenBuilt: () => inFlight ?? Promise.resolve(),
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      pending.clear();
      unsubscribe();
      listeners.clear();
    },
  };
}

function scopeOf(
  cds: ResourcesByName,
  eds: ResourcesByName,
  lds: ResourcesByName,
  rds: ResourcesByName,
  previous?: ScopeResources,
  vhosts?: ResourcesByName,
): ScopeResources {
  if (
    previous &&
    previous.get(TYPE_URL.cluster) === cds &&
    previous.get(TYPE_URL.endpoint) === eds &&
    previous.get(TYPE_URL.listener) === lds &&
    previous.get(TYPE_URL.route) === rds &&
    previous.get(TYPE_URL.virtualHost) === vhosts
  ) {
    return previous;
  }
  const out = new Map<TypeUrl, ResourcesByName>([
    [TYPE_URL.cluster, cds],
    [TYPE_URL.endpoint, eds],
    [TYPE_URL.listener, lds],
    [TYPE_URL.route, rds],
  ]);
  if (vhosts) out.set(TYPE_URL.virtualHost, vhosts);
  return out;
}

function changeSets(
  cds: ReadonlySet<string>,
  eds: ReadonlySet<string>,
  lds: ReadonlySet<string>,
  rds: ReadonlySet<string>,
  vhosts?: ReadonlySet<string>,
): ReadonlyMap<TypeUrl, ReadonlySet<string>> {
  const none = (s: ReadonlySet<string>) => (s.size === 0 ? EMPTY_SET : s);
  const out = new Map<TypeUrl, ReadonlySet<string>>([
    [TYPE_URL.cluster, none(cds)],
    [TYPE_URL.endpoint, none(eds)],
    [TYPE_URL.listener, none(lds)],
    [TYPE_URL.route, none(rds)],
  ]);
  if (vhosts) out.set(TYPE_URL.virtualHost, none(vhosts));
  return out;
}

/** Names whose resource differs between two maps of VHDS resources (or that only one has). */
function vhostChanges(prev: ResourcesByName | undefined, next: ResourcesByName): ReadonlySet<string> {
  if (prev === next) return EMPTY_SET;
  const names = new Set<string>();
  for (const [name, r] of next) if (prev?.get(name) !== r) names.add(name);
  for (const name of prev?.keys() ?? []) if (!next.has(name)) names.add(name);
  return names;
}

/** Assembles the scopes from the build state, sharing CDS/EDS maps (and unchanged scopes) by reference. */
function makeSnapshot(previous: Snapshot | undefined, result: BuildResult, changedAt: number, serial: number): Snapshot {
  const { state, changed } = result;
  const scopes = new Map<ScopeKey, ScopeResources>();
  const vhdsScopes = new Map<ScopeKey, ScopeResources>();
  const changes = new Map<ScopeKey, ReadonlyMap<TypeUrl, ReadonlySet<string>>>();
  for (const ns of [...state.namespaces.keys()].sort()) {
    const nsState = state.namespaces.get(ns);
    if (!nsState) continue;
    const key = envoyScope(ns);
    const prevScope = previous?.scopes.get(key);
    scopes.set(key, scopeOf(state.maps.cds, state.maps.eds, nsState.lds, nsState.rds, prevScope));
    // VHDS clients: the same maps but the route table's VHDS form (its virtual hosts come as VirtualHost resources).
    vhdsScopes.set(key, scopeOf(state.maps.cds, state.maps.eds, nsState.lds, nsState.vhdsRds, previous?.vhdsScopes?.get(key), nsState.vhosts));
    if (prevScope) {
      const rds = result.routeTablesChanged.has(ns) ? new Set([outboundRouteName(ns)]) : EMPTY_SET;
      changes.set(key, changeSets(changed.cds, changed.eds, changed.tcpLds, rds, vhostChanges(previous?.vhdsScopes?.get(key)?.get(TYPE_URL.virtualHost), nsState.vhosts)));
    }
  }
  const prevProxyless = previous?.scopes.get(PROXYLESS_SCOPE);
  scopes.set(PROXYLESS_SCOPE, scopeOf(state.maps.pcds, state.maps.eds, state.maps.plds, state.maps.prds, prevProxyless));
  if (prevProxyless) changes.set(PROXYLESS_SCOPE, changeSets(changed.pcds, changed.eds, changed.plds, changed.prds));
  return Object.freeze({ serial, scopes, vhdsScopes, changes, changedAt });
}
