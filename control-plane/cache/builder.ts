// Incremental, copy-on-write mesh state: retranslates changed Services and patches only the maps they touch.
import { TYPE_URL, unpack } from '../../proto/index.ts';
import type { RegistryState, ServiceKey } from '../registry/registry.ts';
import { claimNames, namespaceVirtualHostsSteps } from '../translate/assemble.ts';
import type { TranslateOptions, TranslationProblem, ServiceResources } from '../translate/build.ts';
import { translateService } from '../translate/build.ts';
import { buildVirtualOutbound, VIRTUAL_OUTBOUND } from '../translate/listener.ts';
import { outboundRouteName } from '../translate/names.ts';
import type { Kind, PackedService, PackedVhost } from './packed.ts';
import { KINDS, packService, sameList, sameVhosts } from './packed.ts';
import type { ResourcesByName, VersionedResource } from './snapshot.ts';
import { runNow, type Sliced } from '../slices.ts';
import { encodeRouteTable, encodeVirtualHost, vhdsRouteTable, versioned, versionedBytes, virtualHostResource } from './versions.ts';

export type Translate = (key: ServiceKey, state: RegistryState, options: TranslateOptions) => ServiceResources;

export interface NamespaceState {
  readonly virtualOutbound: VersionedResource;
  /** TCP listeners plus virtualOutbound. */
  readonly lds: ResourcesByName;
  /** `outbound/<ns>` only. */
  readonly rds: ResourcesByName;
  /** VHDS: the virtual hosts of `outbound/<ns>`, one resource each, named `outbound/<ns>/<vhost name>`. */
  readonly vhosts: ResourcesByName;
  /** VHDS: `outbound/<ns>` as VHDS clients get it (`vhds`, no virtual hosts); the same map for the namespace's life. */
  readonly vhdsRds: ResourcesByName;
  readonly problems: readonly TranslationProblem[];
}

export interface BuildState {
  readonly services: ReadonlyMap<ServiceKey, PackedService>;
  readonly maps: Readonly<Record<Kind, ResourcesByName>>;
  readonly tcpProblems: readonly TranslationProblem[];
  /** Every vhost, sorted by name. */
  readonly vhosts: readonly PackedVhost[];
  readonly namespaces: ReadonlyMap<string, NamespaceState>;
  /** target Service → Services whose routes name it. */
  readonly dependents: ReadonlyMap<ServiceKey, ReadonlySet<ServiceKey>>;
  /** cluster → Services whose routes name it. */
  readonly referrers: ReadonlyMap<string, ReadonlySet<ServiceKey>>;
  /** namespace → how many Services it has (a namespace without any keeps its scope only while a proxy holds it). */
  readonly serviceCounts: ReadonlyMap<string, number>;
}

/** Which `envoy/<ns>` scopes exist besides those of namespaces with Services. */
export interface NamespaceScopes {
  /** Namespaces to build even without Services (a proxy there connected). */
  readonly add?: Iterable<string>;
  /** Whether a namespace without Services keeps its scope (a proxy there is connected); default: none does. */
  readonly held?: (namespace: string) => boolean;
  /** Namespaces whose last proxy left: their scope goes unless they have Services or are held again. */
  readonly released?: Iterable<string>;
}

export interface BuildResult {
  readonly state: BuildState;
  /** Names changed per kind (shared by every scope that holds that map). */
  readonly changed: Readonly<Record<Kind, ReadonlySet<string>>>;
  /** Namespaces whose `outbound/<ns>` table changed. */
  readonly routeTablesChanged: ReadonlySet<string>;
  readonly newNamespaces: ReadonlySet<string>;
  /** Namespaces whose scope this build dropped (no Services left and no proxy holding it). */
  readonly removedNamespaces: ReadonlySet<string>;
  readonly violations: readonly string[];
  readonly translated: number;
}

export const EMPTY_BUILD: BuildState = {
  services: new Map(),
  maps: { cds: new Map(), pcds: new Map(), eds: new Map(), tcpLds: new Map(), plds: new Map(), prds: new Map() },
  tcpProblems: [],
  vhosts: [],
  namespaces: new Map(),
  dependents: new Map(),
  referrers: new Map(),
  serviceCounts: new Map(),
};

function emptyChanges(): Record<Kind, Set<string>> {
  return { cds: new Set(), pcds: new Set(), eds: new Set(), tcpLds: new Set(), plds: new Set(), prds: new Set() };
}

/** Retranslates `keys` (and the Services whose routes name them) against `registry`, returning a new state. */
export function applyChanges(
  prev: BuildState,
  registry: RegistryState,
  keys: Iterable<ServiceKey>,
  options: TranslateOptions,
  translate: Translate = translateService,
  scopes: NamespaceScopes = {},
): BuildResult {
  return runNow(applyChangesSteps(prev, registry, keys, options, translate, scopes));
}

/**
 * applyChanges as sliced work (slices.ts): it may pause after each Service translated and each namespace table
 * built. It reads only its arguments (immutable states), so pausing changes nothing for anyone else.
 */
export function* applyChangesSteps(
  prev: BuildState,
  registry: RegistryState,
  keys: Iterable<ServiceKey>,
  options: TranslateOptions,
  translate: Translate = translateService,
  scopes: NamespaceScopes = {},
): Sliced<BuildResult> {
  const queue = new Set<ServiceKey>();
  for (const k of keys) {
    queue.add(k);
    for (const d of prev.dependents.get(k) ?? []) queue.add(d);
  }
  const services = new Map(prev.services);
  const touched: { key: ServiceKey; before: PackedService | undefined; after: PackedService | undefined }[] = [];
  // What each Service served before this change: broken annotations keep their values from there.
  const withHistory: TranslateOptions = { ...options, lastGoodOf: (k) => prev.services.get(k)?.res.settings };
  for (const key of queue) {
    const before = prev.services.get(key);
    const res = translate(key, registry, withHistory);
    const after = res.exists ? packService(res, before) : undefined;
    if (after) services.set(key, after);
    else services.delete(key);
    touched.push({ key, before, after });
    yield;
  }

  // Named resources: patch copies of only the maps that change.
  const changed = emptyChanges();
  const maps: Record<Kind, ResourcesByName> = { ...prev.maps };
  let tcpTouched = false;
  for (const kind of KINDS) {
    let copy: Map<string, VersionedResource> | undefined;
    const writable = () => (copy ??= new Map(prev.maps[kind]));
    for (const [i, { before, after }] of touched.entries()) {
      if (i % 256 === 255) yield;
      const oldList = before?.resources[kind];
      const newList = after?.resources[kind];
      if (sameList(oldList, newList)) continue;
      if (kind === 'tcpLds') {
        tcpTouched = true; // listener names can collide across Services (same cluster IP): rebuilt below
        continue;
      }
      const keep = new Set((newList ?? []).map((r) => r.name));
      for (const r of oldList ?? []) {
        if (!keep.has(r.name)) {
          writable().delete(r.name);
          changed[kind].add(r.name);
        }
      }
      for (const r of newList ?? []) {
        if (prev.maps[kind].get(r.name) !== r) {
          writable().set(r.name, r);
          changed[kind].add(r.name);
        }
      }
    }
    if (copy) maps[kind] = copy;
  }

  let tcpProblems = prev.tcpProblems;
  if (tcpTouched) {
    const rebuilt = rebuildTcpListeners(services);
    tcpProblems = rebuilt.problems;
    for (const [name, r] of rebuilt.map) if (prev.maps.tcpLds.get(name) !== r) changed.tcpLds.add(name);
    for (const name of prev.maps.tcpLds.keys()) if (!rebuilt.map.has(name)) changed.tcpLds.add(name);
    maps.tcpLds = changed.tcpLds.size > 0 ? rebuilt.map : prev.maps.tcpLds;
  }

  // Route dependencies and cluster referrers.
  const depChanges: Relink<ServiceKey>[] = [];
  const refChanges: Relink<string>[] = [];
  for (const { key, before, after } of touched) {
    const oldDeps = before?.res.dependsOn ?? [];
    const newDeps = after?.res.dependsOn ?? [];
    if (oldDeps.join() !== newDeps.join()) depChanges.push({ key, oldTargets: oldDeps, newTargets: newDeps });
    const oldRefs = before?.refs ?? [];
    const newRefs = after?.refs ?? [];
    if (oldRefs.join() !== newRefs.join()) refChanges.push({ key, oldTargets: oldRefs, newTargets: newRefs });
  }
  const dependents = relink(prev.dependents, depChanges);
  const referrers = relink(prev.referrers, refChanges);

  // Virtual hosts and the per-namespace tables.
  const vhostsChanged = touched.some(({ before, after }) => !sameVhosts(before, after));
  const vhosts = vhostsChanged ? sortedVhosts(services) : prev.vhosts;
  // Services per namespace; a namespace left with none loses its scope unless a proxy there holds it.
  let serviceCounts = prev.serviceCounts;
  const emptied = new Set<string>(scopes.released ?? []);
  for (const { before, after } of touched) {
    if (Boolean(before) === Boolean(after)) continue;
    const ns = ((before ?? after) as PackedService).res.namespace;
    if (serviceCounts === prev.serviceCounts) serviceCounts = new Map(prev.serviceCounts);
    const n = (serviceCounts.get(ns) ?? 0) + (after ? 1 : -1);
    if (n > 0) (serviceCounts as Map<string, number>).set(ns, n);
    else {
      (serviceCounts as Map<string, number>).delete(ns);
      emptied.add(ns);
    }
  }
  const namespaceNames = new Set([...prev.namespaces.keys(), ...(scopes.add ?? [])]);
  for (const { after } of touched) if (after) namespaceNames.add(after.res.namespace);
  const namespaces = new Map(prev.namespaces);
  const removedNamespaces = new Set<string>();
  const added = new Set(scopes.add ?? []);
  for (const ns of emptied) {
    if (serviceCounts.has(ns) || added.has(ns) || scopes.held?.(ns) === true || !namespaceNames.has(ns)) continue;
    namespaceNames.delete(ns);
    if (namespaces.delete(ns)) removedNamespaces.add(ns);
  }
  const routeTablesChanged = new Set<string>();
  const newNamespaces = new Set<string>();
  for (const ns of namespaceNames) {
    const old = prev.namespaces.get(ns);
    if (old && !vhostsChanged && maps.tcpLds === prev.maps.tcpLds) continue;
    const next = yield* buildNamespaceSteps(ns, old, vhosts, maps.tcpLds, vhostsChanged || !old, maps.tcpLds !== prev.maps.tcpLds);
    namespaces.set(ns, next);
    if (!old) newNamespaces.add(ns);
    else if (next.rds !== old.rds) routeTablesChanged.add(ns);
    yield;
  }

  const state: BuildState = { services, maps, tcpProblems, vhosts, namespaces, dependents, referrers, serviceCounts };
  const violations = yield* checkChanges(state, touched, changed, newNamespaces);
  return { state, changed, routeTablesChanged, newNamespaces, removedNamespaces, violations, translated: queue.size };
}

interface Relink<K> {
  readonly key: ServiceKey;
  readonly oldTargets: readonly K[];
  readonly newTargets: readonly K[];
}

/** The index with every change applied: one copy of the map (and of each target's set) per build, not per Service. */
function relink<K>(index: ReadonlyMap<K, ReadonlySet<ServiceKey>>, changes: readonly Relink<K>[]): ReadonlyMap<K, ReadonlySet<ServiceKey>> {
  if (changes.length === 0) return index;
  const out = new Map(index);
  const copied = new Set<K>();
  const writable = (t: K): Set<ServiceKey> => {
    let s = out.get(t) as Set<ServiceKey> | undefined;
    if (!copied.has(t)) {
      s = new Set(s);
      out.set(t, s);
      copied.add(t);
    }
    return s as Set<ServiceKey>;
  };
  for (const { key, oldTargets } of changes) for (const t of oldTargets) writable(t).delete(key);
  for (const { key, newTargets } of changes) for (const t of newTargets) writable(t).add(key);
  for (const t of copied) if (out.get(t)?.size === 0) out.delete(t);
  return out;
}

function rebuildTcpListeners(services: ReadonlyMap<ServiceKey, PackedService>) {
  const map = new Map<string, VersionedResource>();
  const owners = new Map<string, ServiceKey>();
  const problems: TranslationProblem[] = [];
  for (const key of [...services.keys()].sort()) {
    const list = services.get(key)?.resources.tcpLds ?? [];
    claimNames(map, owners, key, list, 'listener', problems);
  }
  return { map, problems };
}

function sortedVhosts(services: ReadonlyMap<ServiceKey, PackedService>): PackedVhost[] {
  const all: PackedVhost[] = [];
  for (const s of services.values()) all.push(...s.vhosts);
  return all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The listeners and route table of `envoy/<ns>`; re-encodes the table only when `rebuildRoutes`. */
export function buildNamespace(
  ns: string,
  old: NamespaceState | undefined,
  vhosts: readonly PackedVhost[],
  tcpLds: ResourcesByName,
  rebuildRoutes: boolean,
  tcpChanged = true,
): NamespaceState {
  return runNow(buildNamespaceSteps(ns, old, vhosts, tcpLds, rebuildRoutes, tcpChanged));
}

/** buildNamespace as sliced work (slices.ts): a table holds every HTTP vhost of the mesh, so it pauses within it. */
function* buildNamespaceSteps(
  ns: string,
  old: NamespaceState | undefined,
  vhosts: readonly PackedVhost[],
  tcpLds: ResourcesByName,
  rebuildRoutes: boolean,
  tcpChanged: boolean,
): Sliced<NamespaceState> {
  const virtualOutbound = old?.virtualOutbound ?? versioned(TYPE_URL.listener, VIRTUAL_OUTBOUND, buildVirtualOutbound(ns));
  let lds = old?.lds;
  if (!lds || tcpChanged) {
    const fresh = new Map(tcpLds);
    fresh.set(VIRTUAL_OUTBOUND, virtualOutbound);
    lds = fresh;
  }
  let rds = old?.rds;
  let vhostMap = old?.vhosts;
  let problems = old?.problems ?? [];
  const routeName = outboundRouteName(ns);
  if (rebuildRoutes || !rds || !vhostMap) {
    const owned = vhosts.map((v) => ({ service: v.service, namespace: v.namespace, vhost: v }));
    const table = yield* namespaceVirtualHostsSteps(owned, ns);
    problems = table.problems;
    const bytes: Buffer[] = [];
    // VHDS: the same bytes as resources of their own; one whose bytes did not change keeps its resource (and version).
    const nextVhosts = new Map<string, VersionedResource>();
    let vhostsSame = old?.vhosts !== undefined && old.vhosts.size === table.vhosts.length;
    // The table keeps the vhosts' order but drops any left without a domain: then pair them by name, not position.
    const byName = table.vhosts.length === vhosts.length ? undefined : new Map(vhosts.map((v) => [v.name, v]));
    for (const [i, vh] of table.vhosts.entries()) {
      if (i % 1000 === 999) yield;
      const packed = (byName ? byName.get(vh.name ?? '') : vhosts[i]) as PackedVhost;
      let b: Buffer;
      if (vh === packed.local) b = packed.localBytes;
      else if (vh === packed.remote) b = packed.remoteBytes;
      else b = encodeVirtualHost(vh); // domains removed as duplicates
      bytes.push(b);
      const resource = virtualHostResource(routeName, packed.name, b, vh, old?.vhosts);
      if (resource !== old?.vhosts.get(resource.name)) vhostsSame = false;
      nextVhosts.set(resource.name, resource);
    }
    yield;
    vhostMap = vhostsSame && old ? old.vhosts : nextVhosts;
    const previous = old?.rds.get(routeName);
    const resource = versionedBytes(TYPE_URL.route, routeName, encodeRouteTable(routeName, bytes), { name: routeName, virtual_hosts: table.vhosts }, previous);
    rds = resource === previous && old ? old.rds : new Map([[routeName, resource]]);
  }
  const vhdsRds = old?.vhdsRds ?? new Map([[routeName, vhdsRouteTable(routeName)]]);
  return { virtualOutbound, lds, rds, vhosts: vhostMap, vhdsRds, problems };
}

/** Checks what this build changed: EDS clusters have CLAs, routes name existing clusters, listeners existing tables. */
function* checkChanges(
  state: BuildState,
  touched: readonly { key: ServiceKey; after: PackedService | undefined }[],
  changed: Readonly<Record<Kind, ReadonlySet<string>>>,
  newNamespaces: ReadonlySet<string>,
): Sliced<string[]> {
  const { cds, pcds, eds, prds } = state.maps;
  const problems: string[] = [];
  const isEds = (r: VersionedResource | undefined) => (r?.message as { type?: string } | undefined)?.type === 'EDS';
  for (const [i, { key, after }] of touched.entries()) {
    if (i % 256 === 255) yield;
    if (!after) continue;
    for (const c of [...after.resources.cds, ...after.resources.pcds]) {
      if (isEds(c) && !eds.has(c.name)) problems.push(`Service ${key}: EDS cluster ${c.name} has no ClusterLoadAssignment`);
    }
    for (const ref of after.refs) {
      if (!cds.has(ref) || !pcds.has(ref)) problems.push(`Service ${key}: a route names cluster ${ref}, which is not published`);
    }
    for (const l of after.resources.tcpLds) {
      const cluster = tcpClusterOf(l);
      if (cluster === undefined || !cds.has(cluster)) problems.push(`Service ${key}: TCP listener ${l.name} names cluster ${cluster}, which is not published`);
    }
    for (const l of after.resources.plds) {
      if (!prds.has(l.name)) problems.push(`Service ${key}: listener ${l.name} names route table ${l.name}, which is not published`);
    }
  }
  for (const name of changed.eds) {
    if (!eds.has(name) && (isEds(cds.get(name)) || isEds(pcds.get(name)))) problems.push(`cluster ${name} lost its ClusterLoadAssignment`);
  }
  for (const name of [...changed.cds, ...changed.pcds]) {
    if (!cds.has(name) || !pcds.has(name)) {
      const users = state.referrers.get(name);
      if (users && users.size > 0) problems.push(`cluster ${name} was removed but routes of ${[...users].join(', ')} still name it`);
    }
  }
  for (const ns of newNamespaces) {
    if (!state.namespaces.get(ns)?.rds.has(outboundRouteName(ns))) problems.push(`namespace ${ns}: virtualOutbound names a missing route table`);
  }
  return problems;
}

function tcpClusterOf(listener: VersionedResource): string | undefined {
  const chain = (listener.message as { filter_chains?: { filters?: { typed_config?: { type_url: string; value: Uint8Array } }[] }[] })
    .filter_chains?.[0]?.filters?.[0]?.typed_config;
  return chain ? unpack<{ cluster?: string }>(chain).cluster : undefined;
}
