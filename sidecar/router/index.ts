// The router folder's interface: compiled route tables and request matching.
export { RouteTable, findRoute, pickCluster, splitAbsoluteUrl, normalizeAuthority } from './match.ts';
export type { CompiledRoute, CompiledVirtualHost, RequestHeaders } from './match.ts';
