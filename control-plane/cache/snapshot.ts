// The contract between translation and the xDS server: immutable snapshots of encoded resources, grouped by scope.
import type { AnyMessage, Node__Output, TypeUrl } from '../../proto/index.ts';

/** One xDS resource, encoded once and shared by every stream that sends it. */
export interface VersionedResource {
  readonly name: string;
  /** A content hash: equal bytes give equal versions, across restarts too (so resumed delta streams skip unchanged resources). */
  readonly version: string;
  /** The resource packed as google.protobuf.Any, ready for DiscoveryResponse.resources or Resource.resource. */
  readonly any: AnyMessage;
  /** The same resource as a plain object with Envoy's field names, for /debug/config_dump. */
  readonly message: object;
}

export type ResourcesByName = ReadonlyMap<string, VersionedResource>;

/** All resources of one scope, per type URL (CDS, EDS, LDS, RDS; and VHDS in a scope's VHDS form); a type with nothing has an empty map. */
export type ScopeResources = ReadonlyMap<TypeUrl, ResourcesByName>;

/**
 * A scope is a group of nodes that see the same config: `envoy/<namespace>` for sidecars and Envoy
 * (short service names resolve in the proxy's namespace) and `proxyless` for gRPC xDS clients.
 * Scopes share unchanged maps and resources by reference, so a scope costs only what differs.
 */
export type ScopeKey = string;

export interface Snapshot {
  /** Increases by one on every publish. */
  readonly serial: number;
  readonly scopes: ReadonlyMap<ScopeKey, ScopeResources>;
  /**
   * The `envoy/<ns>` scopes as VHDS clients (delta ADS, node.client_features VHDS_FEATURE) get them: the same maps,
   * but route tables with `vhds` and no virtual hosts, and the virtual hosts one resource each under the VirtualHost
   * type URL (only here: `scopes` stays what every other client gets). Absent: no scope has a VHDS form.
   */
  readonly vhdsScopes?: ReadonlyMap<ScopeKey, ScopeResources>;
  /**
   * Names whose resource changed, appeared or disappeared since the previous snapshot, per scope and type.
   * A scope that is new in this snapshot has no entry: streams treat all of it as changed.
   */
  readonly changes: ReadonlyMap<ScopeKey, ReadonlyMap<TypeUrl, ReadonlySet<string>>>;
  /** performance.now() of the earliest registry change folded into this snapshot (for convergence timing). */
  readonly changedAt: number;
}

/** The cache as the xDS server sees it: the current snapshot, a publish notification, and scope selection. */
export interface SnapshotCache {
  current(): Snapshot;
  /** Called synchronously on every publish, in order. Returns an unsubscribe function. */
  subscribe(listener: (snapshot: Snapshot) => void): () => void;
  /** The scope a node belongs to; makes sure that scope exists in the current snapshot (built on first use). */
  scopeOf(node: Node__Output): ScopeKey;
  /**
   * A stream that called scopeOf has ended. A scope of a namespace without Services lasts while a stream uses it,
   * so scopes of namespaces that come and go (or that nodes made up) do not pile up.
   */
  releaseScope?(scope: ScopeKey): void;
}
