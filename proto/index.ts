// The wire contract's one interface: loaders, Any packing, type URLs, and the generated message types.
export { type AnyMessage, decodeMessage, encodeMessage, pack, UnknownTypeError, unpack } from './any.ts';
export { adsClientConstructor, certificateClientConstructor, type ClientConstructor, serviceDefinition } from './clients.ts';
export { CONVERSION, grpcDefinitions, messageRoot, PROTO_FILES, PROTO_ROOT } from './load.ts';
export * from './type-urls.ts';
export type { AuthzOperation, AuthzSource } from './skein-metadata.ts';

export type { Cluster, Cluster__Output } from './generated/envoy/config/cluster/v3/Cluster.ts';
export type { Address } from './generated/envoy/config/core/v3/Address.ts';
export type { Node, Node__Output } from './generated/envoy/config/core/v3/Node.ts';
export type {
  ClusterLoadAssignment,
  ClusterLoadAssignment__Output,
} from './generated/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
export type { LbEndpoint, LbEndpoint__Output } from './generated/envoy/config/endpoint/v3/LbEndpoint.ts';
export type { Listener, Listener__Output } from './generated/envoy/config/listener/v3/Listener.ts';
export type {
  RouteConfiguration,
  RouteConfiguration__Output,
} from './generated/envoy/config/route/v3/RouteConfiguration.ts';
export type { VirtualHost, VirtualHost__Output } from './generated/envoy/config/route/v3/VirtualHost.ts';
export type { Route, Route__Output } from './generated/envoy/config/route/v3/Route.ts';
export type {
  HttpConnectionManager,
  HttpConnectionManager__Output,
} from './generated/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
export type {
  HttpProtocolOptions,
  HttpProtocolOptions__Output,
} from './generated/envoy/extensions/upstreams/http/v3/HttpProtocolOptions.ts';
export type { TcpProxy, TcpProxy__Output } from './generated/envoy/extensions/filters/network/tcp_proxy/v3/TcpProxy.ts';
export type {
  DiscoveryRequest,
  DiscoveryRequest__Output,
} from './generated/envoy/service/discovery/v3/DiscoveryRequest.ts';
export type {
  DiscoveryResponse,
  DiscoveryResponse__Output,
} from './generated/envoy/service/discovery/v3/DiscoveryResponse.ts';
export type {
  DeltaDiscoveryRequest,
  DeltaDiscoveryRequest__Output,
} from './generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
export type {
  DeltaDiscoveryResponse,
  DeltaDiscoveryResponse__Output,
} from './generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
export type { Resource, Resource__Output } from './generated/envoy/service/discovery/v3/Resource.ts';
export type { AggregatedDiscoveryServiceClient } from './generated/envoy/service/discovery/v3/AggregatedDiscoveryService.ts';
export type { AggregatedDiscoveryServiceHandlers } from './generated/envoy/service/discovery/v3/AggregatedDiscoveryService.ts';
export type { CertificateServiceClient } from './generated/skein/ca/v1/CertificateService.ts';
export type { CertificateServiceHandlers } from './generated/skein/ca/v1/CertificateService.ts';
