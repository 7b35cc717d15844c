// Resources for an Envoy without ADS: their `ads: {}` config sources (EDS in Clusters, RDS in HTTP connection managers) point at the per-type services instead.
import { decodeMessage, EXTENSION_TYPE_URL, type Node__Output, pack, TYPE_URL, type TypeUrl } from '../../proto/index.ts';
import type { ResourcesByName, ScopeResources, VersionedResource } from '../cache/snapshot.ts';
import { versioned } from '../cache/versions.ts';

/** Node metadata naming the bootstrap cluster that reaches this control plane (default DEFAULT_XDS_CLUSTER). */
export const XDS_CLUSTER_METADATA = 'XDS_CLUSTER';
/** The name Envoy's examples and most bootstraps give the control plane's cluster. */
export const DEFAULT_XDS_CLUSTER = 'xds_cluster';

/**
 * Where an Envoy without ADS fetches the EDS and RDS resources that Clusters and Listeners name: Skein's resources say
 * `ads: {}`, which such an Envoy rejects ("ADS must be configured to support an ADS config source"). On a per-type CDS
 * or LDS stream they are sent with an api_config_source of the stream's own kind (GRPC for SotW, DELTA_GRPC for delta)
 * over the node's xDS cluster (node metadata XDS_CLUSTER, else `xds_cluster`), node on the first request only.
 */
export interface PerTypeSource {
  readonly apiType: 'GRPC' | 'DELTA_GRPC';
  readonly cluster: string;
}

export function perTypeSourceOf(node: Node__Output, apiType: PerTypeSource['apiType']): PerTypeSource {
  const fields = (node.metadata as { fields?: Record<string, { stringValue?: string; string_value?: string }> } | null | undefined)?.fields;
  const f = fields?.[XDS_CLUSTER_METADATA];
  return { apiType, cluster: f?.stringValue || f?.string_value || DEFAULT_XDS_CLUSTER };
}

const keyOf = (source: PerTypeSource): string => `${source.apiType}\0${source.cluster}`;

function configSource(source: PerTypeSource): object {
  return {
    resource_api_version: 'V3',
    api_config_source: {
      api_type: source.apiType,
      transport_api_version: 'V3',
      grpc_services: [{ envoy_grpc: { cluster_name: source.cluster } }],
      // The server keeps the node of a stream's first request: later ones need not repeat it.
      set_node_on_first_message_only: true,
    },
  };
}

const isAds = (cs: unknown): boolean => typeof cs === 'object' && cs !== null && (cs as { ads?: unknown }).ads != null;

interface FilterLike {
  name?: string;
  typed_config?: { type_url: string; value: Uint8Array } | null;
}

/** A Cluster or Listener message with its ADS config sources replaced, or undefined when it has none. */
function rewrite(typeUrl: TypeUrl, message: Record<string, unknown>, source: PerTypeSource): Record<string, unknown> | undefined {
  if (typeUrl === TYPE_URL.cluster) {
    const eds = message.eds_cluster_config as { eds_config?: unknown } | null | undefined;
    if (!eds || !isAds(eds.eds_config)) return undefined;
    return { ...message, eds_cluster_config: { ...eds, eds_config: configSource(source) } };
  }
  // Listeners: the RDS config source inside each HTTP connection manager filter (packed as Any).
  let changed = false;
  const filter = (f: FilterLike): FilterLike => {
    const any = f.typed_config;
    if (!any || any.type_url !== EXTENSION_TYPE_URL.httpConnectionManager) return f;
    const hcm = decodeMessage<{ rds?: { config_source?: unknown } | null }>(any.type_url, any.value);
    if (!hcm.rds || !isAds(hcm.rds.config_source)) return f;
    changed = true;
    return { ...f, typed_config: pack(any.type_url, { ...hcm, rds: { ...hcm.rds, config_source: configSource(source) } }) };
  };
  const chain = (c: { filters?: FilterLike[] } | null | undefined) => (c?.filters ? { ...c, filters: c.filters.map(filter) } : c);
  const out = { ...message };
  if (Array.isArray(message.filter_chains)) out.filter_chains = (message.filter_chains as { filters?: FilterLike[] }[]).map(chain);
  if (message.default_filter_chain) out.default_filter_chain = chain(message.default_filter_chain as { filters?: FilterLike[] });
  return changed ? out : undefined;
}

/** Per resource and source: its rewritten form (unchanged resources keep theirs across publishes). */
const byResource = new WeakMap<VersionedResource, Map<string, VersionedResource>>();
/** Per map and source: the rewritten map, shared by every per-type stream of that source. */
const byMap = new WeakMap<ResourcesByName, Map<string, ResourcesByName>>();
/** Per scope, type and source: the scope with that type's map rewritten (the same object for the same input). */
const byScope = new WeakMap<ScopeResources, Map<string, ScopeResources>>();

function rewriteResource(typeUrl: TypeUrl, r: VersionedResource, source: PerTypeSource, key: string): VersionedResource {
  let forResource = byResource.get(r);
  const hit = forResource?.get(key);
  if (hit) return hit;
  const message = rewrite(typeUrl, r.message as Record<string, unknown>, source);
  const out = message ? versioned(typeUrl, r.name, message) : r;
  if (!forResource) byResource.set(r, (forResource = new Map()));
  forResource.set(key, out);
  return out;
}

/** `map` (Clusters or Listeners) with ADS config sources pointing at the per-type services of `source`. */
export function perTypeResources(typeUrl: TypeUrl, map: ResourcesByName, source: PerTypeSource): ResourcesByName {
  const key = keyOf(source);
  let forMap = byMap.get(map);
  const hit = forMap?.get(key);
  if (hit) return hit;
  let out: Map<string, VersionedResource> | undefined;
  for (const [name, r] of map) {
    const rewritten = rewriteResource(typeUrl, r, source, key);
    if (rewritten === r) continue;
    out ??= new Map(map);
    out.set(name, rewritten);
  }
  const result = out ?? map;
  if (!forMap) byMap.set(map, (forMap = new Map()));
  forMap.set(key, result);
  return result;
}

/** The scope as a per-type stream of `typeUrl` (CDS or LDS) sends it; other types are left as they are. */
export function perTypeScope(scope: ScopeResources, typeUrl: TypeUrl, source: PerTypeSource): ScopeResources {
  const key = `${typeUrl}\0${keyOf(source)}`;
  let forScope = byScope.get(scope);
  const hit = forScope?.get(key);
  if (hit) return hit;
  const map = scope.get(typeUrl);
  const rewritten = map ? perTypeResources(typeUrl, map, source) : map;
  let out = scope;
  if (map && rewritten !== map) {
    const copy = new Map(scope);
    copy.set(typeUrl, rewritten as ResourcesByName);
    out = copy;
  }
  if (!forScope) byScope.set(scope, (forScope = new Map()));
  forScope.set(key, out);
  return out;
}
