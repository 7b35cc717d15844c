// One Service's translation encoded into versioned resources, reusing the previous encoding where bytes are equal.
import type { VirtualHost } from '../../proto/index.ts';
import { TYPE_URL, type TypeUrl } from '../../proto/index.ts';
import type { ServiceKey } from '../registry/registry.ts';
import type { ServiceResources } from '../translate/build.ts';
import { clustersOfRoutes } from '../translate/route.ts';
import type { VersionedResource } from './snapshot.ts';
import { encodeVirtualHost, versioned } from './versions.ts';

/** A vhost with both encodings (as other namespaces and as its own namespace see it). */
export interface PackedVhost {
  readonly name: string;
  readonly service: ServiceKey;
  readonly namespace: string;
  readonly remote: VirtualHost;
  readonly local: VirtualHost;
  readonly remoteBytes: Buffer;
  readonly localBytes: Buffer;
}

/** The resource kinds a Service contributes by name (vhosts are handled separately: they live inside tables). */
export const KINDS = ['cds', 'pcds', 'eds', 'tcpLds', 'plds', 'prds'] as const;
export type Kind = (typeof KINDS)[number];

export const TYPE_OF: Readonly<Record<Kind, TypeUrl>> = {
  cds: TYPE_URL.cluster,
  pcds: TYPE_URL.cluster,
  eds: TYPE_URL.endpoint,
  tcpLds: TYPE_URL.listener,
  plds: TYPE_URL.listener,
  prds: TYPE_URL.route,
};

export interface PackedService {
  readonly res: ServiceResources;
  readonly resources: Readonly<Record<Kind, readonly VersionedResource[]>>;
  readonly vhosts: readonly PackedVhost[];
  /** Clusters this Service's routes and TCP listeners name (for the consistency check). */
  readonly refs: readonly string[];
}

function packList(
  typeUrl: TypeUrl,
  items: readonly object[],
  nameOf: (item: object) => string,
  previous: readonly VersionedResource[] | undefined,
): VersionedResource[] {
  const prevByName = new Map((previous ?? []).map((r) => [r.name, r]));
  return items.map((item) => versioned(typeUrl, nameOf(item), item, prevByName.get(nameOf(item))));
}

const byName = (item: object) => (item as { name?: string }).name ?? '';

export function packService(res: ServiceResources, previous: PackedService | undefined): PackedService {
  const prev = previous?.resources;
  const pcdsPacked = res.clusters.proxyless.map((c, i) =>
    // The proxyless cluster is often the very object the envoy scope gets: share its encoding too.
    c === res.clusters.envoy[i] ? undefined : c,
  );
  const cds = packList(TYPE_URL.cluster, res.clusters.envoy, byName, prev?.cds);
  const pcdsPrev = new Map((prev?.pcds ?? []).map((r) => [r.name, r]));
  const pcds = pcdsPacked.map((c, i) =>
    c === undefined ? (cds[i] as VersionedResource) : versioned(TYPE_URL.cluster, byName(c), c, pcdsPrev.get(byName(c))),
  );
  const resources: Record<Kind, readonly VersionedResource[]> = {
    cds,
    pcds,
    eds: packList(TYPE_URL.endpoint, res.endpoints, (c) => (c as { cluster_name?: string }).cluster_name ?? '', prev?.eds),
    tcpLds: packList(TYPE_URL.listener, res.tcpListeners, byName, prev?.tcpLds),
    plds: packList(TYPE_URL.listener, res.proxyless.listeners, byName, prev?.plds),
    prds: packList(TYPE_URL.route, res.proxyless.routes, byName, prev?.prds),
  };

  const prevVhosts = new Map((previous?.vhosts ?? []).map((v) => [v.name, v]));
  const vhosts = res.virtualHosts.map((vh): PackedVhost => {
    const remoteBytes = encodeVirtualHost(vh.remote);
    const localBytes = encodeVirtualHost(vh.local);
    const old = prevVhosts.get(vh.name);
    if (old && old.remoteBytes.equals(remoteBytes) && old.localBytes.equals(localBytes)) return old;
    return { name: vh.name, service: res.key, namespace: res.namespace, remote: vh.remote, local: vh.local, remoteBytes, localBytes };
  });

  const refs = new Set<string>();
  for (const vh of res.virtualHosts) for (const c of clustersOfRoutes(vh.remote.routes)) refs.add(c);
  for (const rt of res.proxyless.routes) for (const vh of rt.virtual_hosts ?? []) for (const c of clustersOfRoutes(vh.routes)) refs.add(c);
  return { res, resources, vhosts, refs: [...refs].sort() };
}

/** Whether two packings publish the same vhosts (same objects in the same order). */
export function sameVhosts(a: PackedService | undefined, b: PackedService | undefined): boolean {
  const va = a?.vhosts ?? [];
  const vb = b?.vhosts ?? [];
  return va.length === vb.length && va.every((v, i) => v === vb[i]);
}

export function sameList(a: readonly VersionedResource[] | undefined, b: readonly VersionedResource[] | undefined): boolean {
  const la = a ?? [];
  const lb = b ?? [];
  return la.length === lb.length && la.every((v, i) => v === lb[i]);
}
