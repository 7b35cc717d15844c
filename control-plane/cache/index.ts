// The cache's interface for the xDS server and main: create the cache, snapshot types, scope rules, checks.
export { type CacheOptions, type ControlPlaneCache, createSnapshotCache, type PublishStats, type SnapshotSource } from './cache.ts';
export { checkSnapshot } from './consistency.ts';
export { isProxyless, namespaceOfNode, scopeOfNode } from './scope.ts';
export type { ResourcesByName, ScopeKey, ScopeResources, Snapshot, SnapshotCache, VersionedResource } from './snapshot.ts';
export { contentVersion } from './versions.ts';
export type { TranslateOptions, TranslationProblem } from '../translate/build.ts';
export { envoyScope, PROXYLESS_SCOPE } from '../translate/names.ts';
