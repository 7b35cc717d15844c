// FileRegistry: Services, EndpointSlices, Pods and policies from a watched multi-document YAML file; plus an atomic writer for it.
import { isAscii } from 'node:buffer';
import { watch as fsWatch, type FSWatcher } from 'node:fs';
import { readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { dump } from 'js-yaml';
import { DocumentCache } from './documents.ts';
import { logger } from '../log.ts';
import { PROBLEM_FILE_MISSING, PROBLEM_INVALID, RegistryFileMissingError, RegistryInvalidError } from './errors.ts';
import { Listeners, buildState, objectKey, reuse, sliceOwner } from './objects.ts';
import type { Registry, RegistryChange, RegistryListener, RegistryProblem, RegistryState, ServiceKey, SkeinPolicy } from './registry.ts';
import { EMPTY_STATE, diffStates, policyKey } from './registry.ts';
import type { ParsedObject } from './documents.ts';
import { DEFAULT_SLICE_MS, runSliced, type Sliced } from '../slices.ts';

const log = logger('registry');

export interface FileRegistryOptions {
  /** Delay after a file-system event before reloading, so an editor's burst of writes is read once (ms). */
  readonly debounceMs?: number;
  /** How often to compare the file's mtime/size/inode, for file systems where fs.watch misses events (ms). */
  readonly pollMs?: number;
  /** A large edit is parsed in slices of this long, with an event-loop turn between them (ms; see slices.ts). */
  readonly sliceMs?: number;
}

interface Loaded {
  readonly services: V1Service[];
  readonly slices: V1EndpointSlice[];
  readonly pods: V1Pod[];
  readonly policies: SkeinPolicy[];
}

/**
 * Parses and validates registry file text; throws RegistryInvalidError listing every problem. With a cache, only
 * documents whose text the cache has not seen are parsed, and unchanged documents give the same frozen objects.
 */
export function parseRegistryText(file: string, text: string, cache: DocumentCache = new DocumentCache()): Loaded {
  const { objects, problems } = cache.parse(file, text);
  if (problems.length > 0) throw new RegistryInvalidError(file, problems);
  const out: Loaded = { services: [], slices: [], pods: [], policies: [] };
  for (const o of objects) {
    if (o.kind === 'Service') out.services.push(o.value as V1Service);
    else if (o.kind === 'EndpointSlice') out.slices.push(o.value as V1EndpointSlice);
    else if (o.kind === 'Pod') out.pods.push(o.value as V1Pod);
    else out.policies.push(o.value as SkeinPolicy);
  }
  return out;
}

export class FileRegistry implements Registry {
  readonly description: string;
  private readonly path: string;
  private readonly debounceMs: number;
  private readonly pollMs: number;
  private readonly sliceMs: number;
  private current: RegistryState = EMPTY_STATE;
  private readonly changes = new Listeners<RegistryChange>();
  private readonly problems = new Listeners<RegistryProblem>();
  private watcher: FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  /** Problems in the file's current version when it was rejected (0: the file in use is the file on disk). */
  private rejectedProblems = 0;
  /** The file is gone (the last good state stays served). */
  private missing = false;

  /** What skein_registry_rejected shows: the rejected version's problems, plus one while the file is gone. */
  get rejected(): number {
    return this.rejectedProblems + (this.missing ? 1 : 0);
  }
  /** The bytes last applied (or last rejected), to skip rereads that changed nothing. */
  private lastBytes: Buffer | undefined;
  private readonly documents = new DocumentCache();
  /** The current objects by `<Kind> <namespace>/<name>`, to keep identity across content-equal edits. */
  private byId = new Map<string, object>();
  /** Services that EndpointSlices name but the file does not hold, already warned about (once until that changes). */
  private readonly orphans = new Set<ServiceKey>();
  /** Pod (`<ns>/<name>`) → the Services whose slices point at it; built with each full parse, then kept per edit. */
  private podOwners: PodOwners | undefined;
  /** When a file event or poll first noticed a change not applied yet (for RegistryChange.detectedAt). */
  private noticedAt: number | undefined;
  private lastStat = '';
  private reloading: Promise<void> | undefined;
  /** The read that follows the one under way (reload()). */
  private queued: Promise<void> | undefined;
  private stopped = true;

  constructor(path: string, options: FileRegistryOptions = {}) {
    this.path = path;
    this.description = `file:${path}`;
    this.debounceMs = options.debounceMs ?? 50;
    this.pollMs = options.pollMs ?? 1000;
    this.sliceMs = options.sliceMs ?? DEFAULT_SLICE_MS;
  }

  async start(): Promise<void> {
    let bytes: Buffer;
    try {
      this.lastStat = await this.statKey();
      bytes = await readFile(this.path);
    } catch (err) {
      throw new RegistryFileMissingError(this.path, err);
    }
    await this.apply(bytes, true); // throws RegistryInvalidError: no last good state to fall back on
    this.stopped = false;
    try {
      this.watcher = fsWatch(dirname(this.path), { persistent: false }, (event, name) => {
        if (!name || name.toString() === basename(this.path)) this.schedule(event === 'rename');
      });
      this.watcher.on('error', (err) => log.warn('registry file watch failed; polling only', { error: err.message }));
    } catch (err) {
      log.warn('cannot watch the registry directory; polling only', { error: (err as Error).message });
    }
    this.pollTimer = setInterval(() => {
      void this.statKey().then((key) => {
        if (key !== this.lastStat) this.schedule();
      });
    }, this.pollMs);
    this.pollTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    clearInterval(this.pollTimer);
    clearTimeout(this.debounceTimer);
    await this.reloading;
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

  /** Reloads now (also called by the watcher and the poll); resolves when the file has been read and applied. */
  reload(): Promise<void> {
    if (!this.reloading) {
      this.reloading = this.reloadOnce().finally(() => {
        this.reloading = undefined;
      });
      return this.reloading;
    }
    // A read already under way may have read the file before the caller's write: one more read follows it, shared
    // by everyone who asks meanwhile, and the caller waits for that one (not for the read it may have missed).
    this.queued ??= this.reloading
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.stopped ? undefined : this.reload();
      });
    return this.queued;
  }

  /**
   * Reloads after the debounce. A rename onto the file (an atomic replace: the new file is complete) is read at
   * once, unless the file is gone (a delete-then-write editor), which waits out the debounce like any write.
   */
  private schedule(renamed = false): void {
    if (this.stopped) return;
    this.noticedAt ??= performance.now();
    clearTimeout(this.debounceTimer);
    if (renamed) {
      this.debounceTimer = setTimeout(() => {
        void stat(this.path).then(
          () => void this.reload(),
          () => this.schedule(),
        );
      }, 0);
      return;
    }
    this.debounceTimer = setTimeout(() => void this.reload(), this.debounceMs);
  }

  private async statKey(): Promise<string> {
    try {
      const s = await stat(this.path);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }

  /** An empty file may be a truncate-then-write in progress: confirm it stays empty for a moment before applying. */
  private async stillEmpty(): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, Math.max(100, this.debounceMs * 2)));
    const again = await readFile(this.path).catch(() => Buffer.alloc(0));
    return isBlank(again);
  }

  private async reloadOnce(): Promise<void> {
    const detectedAt = this.noticedAt;
    this.noticedAt = undefined;
    const key = await this.statKey();
    let bytes: Buffer;
    try {
      bytes = await readFile(this.path);
    } catch (err) {
      if (this.lastStat !== 'missing') this.report(PROBLEM_FILE_MISSING, new RegistryFileMissingError(this.path, err).message);
      this.lastStat = 'missing';
      this.missing = true;
      return;
    }
    if (this.missing) {
      this.missing = false;
      log.info('registry file is back', { file: this.path });
    }
    if (isBlank(bytes) && this.current.services.size + this.current.pods.size + this.current.policies.size > 0 && !(await this.stillEmpty())) {
      // An editor truncated the file and is writing it: read it again once it settles, in this same reload, so a
      // caller of reload() gets the written file.
      await new Promise((resolve) => setTimeout(resolve, this.debounceMs));
      this.noticedAt ??= detectedAt;
      if (!this.stopped) await this.reloadOnce();
      return;
    }
    this.lastStat = key;
    if (this.stopped || (this.lastBytes !== undefined && bytes.equals(this.lastBytes))) return;
    try {
      await this.apply(bytes, false, detectedAt);
      if (this.rejectedProblems > 0) log.info('registry file accepted again', { file: this.path });
      this.rejectedProblems = 0;
    } catch (err) {
      if (!(err instanceof RegistryInvalidError)) throw err;
      this.lastBytes = bytes; // report a broken version once, not on every poll
      this.rejectedProblems = err.problems.length;
      log.warn('registry file rejected; serving the last good state', { file: this.path, problems: err.problems.length });
      for (const p of err.problems) this.report(PROBLEM_INVALID, p);
    }
  }

  /**
   * Parses, validates and applies a version of the file. A large one is parsed in slices (the admin server and the
   * xDS streams keep being served meanwhile); the new state is committed at once at the end, or not at all.
   * Reloads are serialized (reload()), so no other apply runs in between.
   */
  private async apply(bytes: Buffer, first: boolean, detectedAt?: number): Promise<void> {
    const started = performance.now();
    // An all-ASCII file (the usual YAML) is handed over as bytes: comparing versions and cutting out the edited
    // documents works on them directly, without decoding the whole file on every change.
    const parsing = this.documents.parseSliced(this.path, isAscii(bytes) ? bytes : bytes.toString('utf8'), this.sliceMs);
    const outcome = parsing.done ? parsing.value : await parsing.promise;
    if (outcome.problems.length > 0) throw new RegistryInvalidError(this.path, outcome.problems, first);
    // A file that became empty (or only comments) is far more often a rewrite caught halfway or a mistake than a wish
    // to withdraw every Service: it is refused, and an explicit empty List says the wish.
    const was = this.current.services.size + this.current.pods.size + this.current.policies.size;
    if (!first && was > 0 && holdsNothing(bytes)) {
      throw new RegistryInvalidError(this.path, [
        `${this.path}: the file holds no objects; refusing to withdraw the ${this.current.services.size} Services, ` +
          `${this.current.pods.size} Pods and ${this.current.policies.size} policies it served (to serve an empty mesh, ` +
          `write "apiVersion: v1\nkind: List\nitems: []")`,
      ]);
    }
    const parsedMs = performance.now() - started;
    const before = this.current;
    if (outcome.delta && !first) {
      this.lastBytes = bytes;
      warnUnknownFields(this.path, outcome.delta.added);
      const delta = runSliced(this.applyDelta(before, outcome.delta.removed, outcome.delta.added, outcome.freshValues), this.sliceMs);
      const { state, changed } = delta.done ? delta.value : await delta.promise;
      this.commit(before, state, started, parsedMs, detectedAt, false, changed);
      return;
    }
    const { objects, freshValues } = outcome;
    warnUnknownFields(this.path, objects.filter((o) => o.unknownFields !== undefined && freshValues.has(o.value)));
    // Unchanged documents give the very objects of the last state; only new ones are compared by content, so an
    // edit that changes nothing Skein reads (a comment, key order) keeps the old object and emits no change.
    const byId = new Map<string, object>();
    const loaded: Loaded = { services: [], slices: [], pods: [], policies: [] };
    for (const o of objects) {
      const value = freshValues.has(o.value) ? reuse(this.byId.get(o.id) ?? undefined, o.value) : o.value;
      byId.set(o.id, value);
      if (o.kind === 'Service') loaded.services.push(value as V1Service);
      else if (o.kind === 'EndpointSlice') loaded.slices.push(value as V1EndpointSlice);
      else if (o.kind === 'Pod') loaded.pods.push(value as V1Pod);
      else loaded.policies.push(value as SkeinPolicy);
    }
    this.byId = byId;
    const next = buildState(loaded.services, loaded.slices, loaded.pods, loaded.policies);
    // Built here, with the full parse, so that the first edit does not pay for it.
    this.podOwners = PodOwners.of(next.slices);
    this.lastBytes = bytes;
    this.commit(before, next, started, parsedMs, detectedAt, first);
  }

  /**
   * The state after one edit, from the objects of the replaced documents and of their replacements: copies of the
   * maps with only those entries changed (the same result as buildState over every object, slices sorted by name).
   */
  private *applyDelta(
    before: RegistryState,
    removed: readonly ParsedObject[],
    added: readonly ParsedObject[],
    fresh: ReadonlySet<object>,
  ): Sliced<{ state: RegistryState; changed: Set<ServiceKey> | undefined }> {
    const gone = new Map<string, object>();
    for (const o of removed) {
      const old = this.byId.get(o.id);
      if (old) gone.set(o.id, old);
    }
    const came = new Map<string, ParsedObject & { resolved: object }>();
    for (const o of added) {
      const value = fresh.has(o.value) ? reuse(this.byId.get(o.id) ?? undefined, o.value) : o.value;
      if (gone.get(o.id) === value) gone.delete(o.id);
      else came.set(o.id, { ...o, resolved: value });
      yield;
    }
    if (gone.size === 0 && came.size === 0) return { state: before, changed: new Set() };
    // What diffStates would find, from the touched objects only (policy changes: diffStates itself).
    const changed = new Set<ServiceKey>();
    const touchedPods = new Set<string>();
    let policyChanged = false;
    let services: Map<ServiceKey, V1Service> | undefined;
    let pods: Map<string, V1Pod> | undefined;
    let policies: Map<string, SkeinPolicy> | undefined;
    const sliceOut = new Set<object>();
    const sliceIn: V1EndpointSlice[] = [];
    for (const [id, old] of gone) {
      this.byId.delete(id);
      if (came.has(id)) continue; // replaced below, keeping its place in the map
      const kind = (old as { kind?: string }).kind;
      if (kind === 'Service') {
        (services ??= new Map(before.services)).delete(objectKey(old) as ServiceKey);
        changed.add(objectKey(old) as ServiceKey);
      } else if (kind === 'EndpointSlice') sliceOut.add(old);
      else if (kind === 'Pod') {
        (pods ??= new Map(before.pods)).delete(objectKey(old));
        touchedPods.add(objectKey(old));
      } else {
        (policies ??= new Map(before.policies)).delete(policyKey(old as SkeinPolicy));
        policyChanged = true;
      }
      yield;
    }
    for (const [id, o] of came) {
      const old = gone.get(id);
      this.byId.set(id, o.resolved);
      if (o.kind === 'Service') {
        const map = (services ??= new Map(before.services));
        if (old && objectKey(old) !== objectKey(o.resolved)) map.delete(objectKey(old) as never);
        map.set(objectKey(o.resolved) as ServiceKey, o.resolved as V1Service);
        changed.add(objectKey(o.resolved) as ServiceKey);
      } else if (o.kind === 'EndpointSlice') {
        if (old) sliceOut.add(old);
        sliceIn.push(o.resolved as V1EndpointSlice);
      } else if (o.kind === 'Pod') {
        const map = (pods ??= new Map(before.pods));
        if (old && objectKey(old) !== objectKey(o.resolved)) map.delete(objectKey(old) as never);
        map.set(objectKey(o.resolved), o.resolved as V1Pod);
        touchedPods.add(objectKey(o.resolved));
      } else {
        const map = (policies ??= new Map(before.policies));
        if (old) map.delete(policyKey(old as SkeinPolicy));
        map.set(policyKey(o.resolved as SkeinPolicy), o.resolved as SkeinPolicy);
        policyChanged = true;
      }
      yield;
    }
    let slices = before.slices as Map<ServiceKey, readonly V1EndpointSlice[]>;
    if (sliceOut.size > 0 || sliceIn.length > 0) {
      slices = new Map(before.slices);
      // The incoming slices grouped by owner (one pass: an edit can bring thousands of Services' slices).
      const owners = new Map<ServiceKey, V1EndpointSlice[]>();
      for (const s of sliceOut as Set<V1EndpointSlice>) {
        const owner = sliceOwner(s);
        if (owner && !owners.has(owner)) owners.set(owner, []);
      }
      for (const s of sliceIn) {
        const owner = sliceOwner(s);
        if (!owner) continue;
        const list = owners.get(owner);
        if (list) list.push(s);
        else owners.set(owner, [s]);
      }
      const index = (this.podOwners ??= PodOwners.of(before.slices));
      for (const [owner, incoming] of owners) {
        changed.add(owner);
        index.unlink(owner, before.slices.get(owner) ?? []);
        const list = (before.slices.get(owner) ?? []).filter((s) => !sliceOut.has(s));
        list.push(...incoming);
        list.sort((a, b) => ((a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1));
        if (list.length > 0) slices.set(owner, Object.freeze(list));
        else slices.delete(owner);
        index.link(owner, list);
        yield;
      }
    }
    const state: RegistryState = Object.freeze({
      services: services ?? before.services,
      slices,
      pods: pods ?? before.pods,
      policies: policies ?? before.policies,
    });
    if (policyChanged) return { state, changed: undefined };
    if (touchedPods.size > 0) {
      const index = (this.podOwners ??= PodOwners.of(state.slices));
      for (const pod of touchedPods) for (const owner of index.owners(pod)) changed.add(owner);
    }
    return { state, changed };
  }

  private commit(
    before: RegistryState,
    next: RegistryState,
    started: number,
    parsedMs: number,
    detectedAt: number | undefined,
    first = false,
    known?: Set<ServiceKey>,
  ): void {
    const changed = known ?? (next === before ? new Set<ServiceKey>() : diffStates(before, next));
    this.current = next;
    // An applied edit is worth a line at info (which Services it changed); the first load and no-op edits at debug.
    const applied = !first && changed.size > 0;
    (applied ? log.info : log.debug)(applied ? 'registry file applied' : 'registry file loaded', {
      file: this.path,
      services: next.services.size,
      changed: changed.size,
      ...(applied ? { changedServices: [...changed].slice(0, 5).join(', ') + (changed.size > 5 ? ', ...' : '') } : {}),
      parseMs: Math.round(parsedMs),
      totalMs: Math.round(performance.now() - started),
      ...(detectedAt !== undefined ? { sinceNoticedMs: Math.round(performance.now() - detectedAt) } : {}),
    });
    if (!first && changed.size > 0) this.changes.emit({ state: next, changed, ...(detectedAt !== undefined ? { detectedAt } : {}) });
    this.warnOrphans(next);
  }

  /**
   * A slice whose kubernetes.io/service-name names no Service in the file serves nothing (as in Kubernetes): said
   * once, since in a hand-written file it is most often a typo or a Service left out.
   */
  private warnOrphans(state: RegistryState): void {
    for (const [key, slices] of state.slices) {
      if (state.services.has(key) || this.orphans.has(key)) continue;
      this.orphans.add(key);
      log.warn('registry file: EndpointSlices name a Service the file does not hold; they serve nothing', {
        problem: `${this.path}: EndpointSlice ${slices.map((sl) => sl.metadata?.name ?? '?').join(', ')} in ${key.split('/')[0]} names Service "${key.split('/')[1]}" (kubernetes.io/service-name), which the file does not hold`,
      });
    }
    for (const key of this.orphans) if (state.services.has(key) || !state.slices.has(key)) this.orphans.delete(key);
  }

  private report(code: string, message: string): void {
    this.problems.emit({ code, message });
  }
}

/** Which Services' slices point at each pod through an endpoint's targetRef, so a pod edit finds them without a scan. */
class PodOwners {
  private readonly byPod = new Map<string, Set<ServiceKey>>();

  static of(slices: RegistryState['slices']): PodOwners {
    const index = new PodOwners();
    for (const [owner, list] of slices) index.link(owner, list);
    return index;
  }

  owners(pod: string): Iterable<ServiceKey> {
    return this.byPod.get(pod) ?? [];
  }

  link(owner: ServiceKey, slices: readonly V1EndpointSlice[]): void {
    for (const pod of podsOf(slices)) {
      let set = this.byPod.get(pod);
      if (!set) this.byPod.set(pod, (set = new Set()));
      set.add(owner);
    }
  }

  unlink(owner: ServiceKey, slices: readonly V1EndpointSlice[]): void {
    for (const pod of podsOf(slices)) {
      const set = this.byPod.get(pod);
      set?.delete(owner);
      if (set?.size === 0) this.byPod.delete(pod);
    }
  }
}

/** The pods (`<ns>/<name>`) the endpoints of some slices point at. */
function* podsOf(slices: readonly V1EndpointSlice[]): Iterable<string> {
  for (const s of slices) {
    for (const e of s.endpoints ?? []) {
      const ref = e.targetRef;
      if (!ref?.name || (ref.kind && ref.kind !== 'Pod')) continue;
      yield `${ref.namespace ?? s.metadata?.namespace ?? 'default'}/${ref.name}`;
    }
  }
}

/** Whether the file holds only whitespace (an editor's truncate before it writes). */
/** Only blank lines, comments and document markers: no object at all (an explicit empty List is an object). */
function holdsNothing(bytes: Buffer): boolean {
  // Line by line, stopping at the first content (a large file is not decoded and split whole for this).
  for (let at = 0; at < bytes.length; ) {
    const nl = bytes.indexOf(0x0a, at);
    const end = nl === -1 ? bytes.length : nl;
    const t = bytes.toString('latin1', at, end).trim();
    if (t !== '' && !t.startsWith('#') && t !== '---' && t !== '...') return false;
    at = end + 1;
  }
  return true;
}

function isBlank(bytes: Buffer): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) return false;
  return true;
}

/** Writes Kubernetes objects as a multi-document YAML registry file atomically (temp file in the same dir + rename). */
export async function writeRegistryFile(path: string, objects: readonly object[]): Promise<void> {
  // Through JSON first, as the API server would see them: class instances (client-node's models) become plain
  // mappings, Dates become timestamps, undefined fields disappear (js-yaml dumps plain data only).
  const text = objects.map((o) => dump(JSON.parse(JSON.stringify(o)) as unknown, { lineWidth: -1, noRefs: true })).join('---\n');
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

/** Logs the unknown fields of objects parsed from new text (each once per version of its document). */
function warnUnknownFields(file: string, objects: readonly ParsedObject[]): void {
  for (const o of objects) {
    for (const f of o.unknownFields ?? []) log.warn('registry file: unknown field, ignored', { problem: `${file}: ${o.label}: ${f}: unknown field, ignored (a typo?)` });
  }
}
