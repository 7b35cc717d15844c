// The upstream folder's interface: clusters and pools, the dispatch seam and its interceptors, PROXY protocol v2.
export { ClusterManager } from './cluster-manager.ts';
export { Cluster, Endpoint, endpointKey } from './cluster.ts';
export type { ClusterStat, EndpointStat } from './cluster.ts';
export { EndpointPool, plainConnector, upstreamError } from './pool.ts';
export type { PoolTarget, ConnectionGauge, Connector, PeerIdentities } from './pool.ts';
export { mtlsConnector } from './connector.ts';
export { compose, headerListFromObject, headerListFromRaw, headerListValue, stripHopByHop, HOP_BY_HOP } from './dispatch.ts';
export type { Dispatch, DispatchController, DispatchHandler, DispatchRequest, HeaderList, Headers, Interceptor, RequestHeadInfo } from './dispatch.ts';
export { BodyKeeper, keepPushed, REPLAY_LIMIT_BYTES, REPLAY_WAIT_MS } from './replay-body.ts';
export { timeoutInterceptor } from './timeout.ts';
export { STREAM_IDLE_TIMEOUT_MS, StreamIdleWatch } from './stream-idle.ts';
export { guardWrites, writeRefused } from './write-guard.ts';
export { encodeProxyHeader, parseProxyHeader, SIGNATURE as PROXY_V2_SIGNATURE } from './proxy-protocol.ts';
export type { ProxyHeader, ParseResult } from './proxy-protocol.ts';
