import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { CircuitBreakers as _envoy_config_cluster_v3_CircuitBreakers, CircuitBreakers__Output as _envoy_config_cluster_v3_CircuitBreakers__Output } from './envoy/config/cluster/v3/CircuitBreakers';
import type { Cluster as _envoy_config_cluster_v3_Cluster, Cluster__Output as _envoy_config_cluster_v3_Cluster__Output } from './envoy/config/cluster/v3/Cluster';
import type { OutlierDetection as _envoy_config_cluster_v3_OutlierDetection, OutlierDetection__Output as _envoy_config_cluster_v3_OutlierDetection__Output } from './envoy/config/cluster/v3/OutlierDetection';
import type { Address as _envoy_config_core_v3_Address, Address__Output as _envoy_config_core_v3_Address__Output } from './envoy/config/core/v3/Address';
import type { AggregatedConfigSource as _envoy_config_core_v3_AggregatedConfigSource, AggregatedConfigSource__Output as _envoy_config_core_v3_AggregatedConfigSource__Output } from './envoy/config/core/v3/AggregatedConfigSource';
import type { ApiConfigSource as _envoy_config_core_v3_ApiConfigSource, ApiConfigSource__Output as _envoy_config_core_v3_ApiConfigSource__Output } from './envoy/config/core/v3/ApiConfigSource';
import type { ConfigSource as _envoy_config_core_v3_ConfigSource, ConfigSource__Output as _envoy_config_core_v3_ConfigSource__Output } from './envoy/config/core/v3/ConfigSource';
import type { ControlPlane as _envoy_config_core_v3_ControlPlane, ControlPlane__Output as _envoy_config_core_v3_ControlPlane__Output } from './envoy/config/core/v3/ControlPlane';
import type { DataSource as _envoy_config_core_v3_DataSource, DataSource__Output as _envoy_config_core_v3_DataSource__Output } from './envoy/config/core/v3/DataSource';
import type { GrpcService as _envoy_config_core_v3_GrpcService, GrpcService__Output as _envoy_config_core_v3_GrpcService__Output } from './envoy/config/core/v3/GrpcService';
import type { HeaderValue as _envoy_config_core_v3_HeaderValue, HeaderValue__Output as _envoy_config_core_v3_HeaderValue__Output } from './envoy/config/core/v3/HeaderValue';
import type { HeaderValueOption as _envoy_config_core_v3_HeaderValueOption, HeaderValueOption__Output as _envoy_config_core_v3_HeaderValueOption__Output } from './envoy/config/core/v3/HeaderValueOption';
import type { Http1ProtocolOptions as _envoy_config_core_v3_Http1ProtocolOptions, Http1ProtocolOptions__Output as _envoy_config_core_v3_Http1ProtocolOptions__Output } from './envoy/config/core/v3/Http1ProtocolOptions';
import type { Http2ProtocolOptions as _envoy_config_core_v3_Http2ProtocolOptions, Http2ProtocolOptions__Output as _envoy_config_core_v3_Http2ProtocolOptions__Output } from './envoy/config/core/v3/Http2ProtocolOptions';
import type { HttpProtocolOptions as _envoy_config_core_v3_HttpProtocolOptions, HttpProtocolOptions__Output as _envoy_config_core_v3_HttpProtocolOptions__Output } from './envoy/config/core/v3/HttpProtocolOptions';
import type { Locality as _envoy_config_core_v3_Locality, Locality__Output as _envoy_config_core_v3_Locality__Output } from './envoy/config/core/v3/Locality';
import type { Metadata as _envoy_config_core_v3_Metadata, Metadata__Output as _envoy_config_core_v3_Metadata__Output } from './envoy/config/core/v3/Metadata';
import type { Node as _envoy_config_core_v3_Node, Node__Output as _envoy_config_core_v3_Node__Output } from './envoy/config/core/v3/Node';
import type { SelfConfigSource as _envoy_config_core_v3_SelfConfigSource, SelfConfigSource__Output as _envoy_config_core_v3_SelfConfigSource__Output } from './envoy/config/core/v3/SelfConfigSource';
import type { SocketAddress as _envoy_config_core_v3_SocketAddress, SocketAddress__Output as _envoy_config_core_v3_SocketAddress__Output } from './envoy/config/core/v3/SocketAddress';
import type { TransportSocket as _envoy_config_core_v3_TransportSocket, TransportSocket__Output as _envoy_config_core_v3_TransportSocket__Output } from './envoy/config/core/v3/TransportSocket';
import type { ClusterLoadAssignment as _envoy_config_endpoint_v3_ClusterLoadAssignment, ClusterLoadAssignment__Output as _envoy_config_endpoint_v3_ClusterLoadAssignment__Output } from './envoy/config/endpoint/v3/ClusterLoadAssignment';
import type { Endpoint as _envoy_config_endpoint_v3_Endpoint, Endpoint__Output as _envoy_config_endpoint_v3_Endpoint__Output } from './envoy/config/endpoint/v3/Endpoint';
import type { LbEndpoint as _envoy_config_endpoint_v3_LbEndpoint, LbEndpoint__Output as _envoy_config_endpoint_v3_LbEndpoint__Output } from './envoy/config/endpoint/v3/LbEndpoint';
import type { LocalityLbEndpoints as _envoy_config_endpoint_v3_LocalityLbEndpoints, LocalityLbEndpoints__Output as _envoy_config_endpoint_v3_LocalityLbEndpoints__Output } from './envoy/config/endpoint/v3/LocalityLbEndpoints';
import type { ApiListener as _envoy_config_listener_v3_ApiListener, ApiListener__Output as _envoy_config_listener_v3_ApiListener__Output } from './envoy/config/listener/v3/ApiListener';
import type { Filter as _envoy_config_listener_v3_Filter, Filter__Output as _envoy_config_listener_v3_Filter__Output } from './envoy/config/listener/v3/Filter';
import type { FilterChain as _envoy_config_listener_v3_FilterChain, FilterChain__Output as _envoy_config_listener_v3_FilterChain__Output } from './envoy/config/listener/v3/FilterChain';
import type { FilterChainMatch as _envoy_config_listener_v3_FilterChainMatch, FilterChainMatch__Output as _envoy_config_listener_v3_FilterChainMatch__Output } from './envoy/config/listener/v3/FilterChainMatch';
import type { Listener as _envoy_config_listener_v3_Listener, Listener__Output as _envoy_config_listener_v3_Listener__Output } from './envoy/config/listener/v3/Listener';
import type { DirectResponseAction as _envoy_config_route_v3_DirectResponseAction, DirectResponseAction__Output as _envoy_config_route_v3_DirectResponseAction__Output } from './envoy/config/route/v3/DirectResponseAction';
import type { HeaderMatcher as _envoy_config_route_v3_HeaderMatcher, HeaderMatcher__Output as _envoy_config_route_v3_HeaderMatcher__Output } from './envoy/config/route/v3/HeaderMatcher';
import type { NonForwardingAction as _envoy_config_route_v3_NonForwardingAction, NonForwardingAction__Output as _envoy_config_route_v3_NonForwardingAction__Output } from './envoy/config/route/v3/NonForwardingAction';
import type { RetryPolicy as _envoy_config_route_v3_RetryPolicy, RetryPolicy__Output as _envoy_config_route_v3_RetryPolicy__Output } from './envoy/config/route/v3/RetryPolicy';
import type { Route as _envoy_config_route_v3_Route, Route__Output as _envoy_config_route_v3_Route__Output } from './envoy/config/route/v3/Route';
import type { RouteAction as _envoy_config_route_v3_RouteAction, RouteAction__Output as _envoy_config_route_v3_RouteAction__Output } from './envoy/config/route/v3/RouteAction';
import type { RouteConfiguration as _envoy_config_route_v3_RouteConfiguration, RouteConfiguration__Output as _envoy_config_route_v3_RouteConfiguration__Output } from './envoy/config/route/v3/RouteConfiguration';
import type { RouteMatch as _envoy_config_route_v3_RouteMatch, RouteMatch__Output as _envoy_config_route_v3_RouteMatch__Output } from './envoy/config/route/v3/RouteMatch';
import type { Vhds as _envoy_config_route_v3_Vhds, Vhds__Output as _envoy_config_route_v3_Vhds__Output } from './envoy/config/route/v3/Vhds';
import type { VirtualHost as _envoy_config_route_v3_VirtualHost, VirtualHost__Output as _envoy_config_route_v3_VirtualHost__Output } from './envoy/config/route/v3/VirtualHost';
import type { WeightedCluster as _envoy_config_route_v3_WeightedCluster, WeightedCluster__Output as _envoy_config_route_v3_WeightedCluster__Output } from './envoy/config/route/v3/WeightedCluster';
import type { Router as _envoy_extensions_filters_http_router_v3_Router, Router__Output as _envoy_extensions_filters_http_router_v3_Router__Output } from './envoy/extensions/filters/http/router/v3/Router';
import type { HttpConnectionManager as _envoy_extensions_filters_network_http_connection_manager_v3_HttpConnectionManager, HttpConnectionManager__Output as _envoy_extensions_filters_network_http_connection_manager_v3_HttpConnectionManager__Output } from './envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager';
import type { HttpFilter as _envoy_extensions_filters_network_http_connection_manager_v3_HttpFilter, HttpFilter__Output as _envoy_extensions_filters_network_http_connection_manager_v3_HttpFilter__Output } from './envoy/extensions/filters/network/http_connection_manager/v3/HttpFilter';
import type { Rds as _envoy_extensions_filters_network_http_connection_manager_v3_Rds, Rds__Output as _envoy_extensions_filters_network_http_connection_manager_v3_Rds__Output } from './envoy/extensions/filters/network/http_connection_manager/v3/Rds';
import type { TcpProxy as _envoy_extensions_filters_network_tcp_proxy_v3_TcpProxy, TcpProxy__Output as _envoy_extensions_filters_network_tcp_proxy_v3_TcpProxy__Output } from './envoy/extensions/filters/network/tcp_proxy/v3/TcpProxy';
import type { HttpProtocolOptions as _envoy_extensions_upstreams_http_v3_HttpProtocolOptions, HttpProtocolOptions__Output as _envoy_extensions_upstreams_http_v3_HttpProtocolOptions__Output } from './envoy/extensions/upstreams/http/v3/HttpProtocolOptions';
import type { ClusterDiscoveryServiceClient as _envoy_service_cluster_v3_ClusterDiscoveryServiceClient, ClusterDiscoveryServiceDefinition as _envoy_service_cluster_v3_ClusterDiscoveryServiceDefinition } from './envoy/service/cluster/v3/ClusterDiscoveryService';
import type { AggregatedDiscoveryServiceClient as _envoy_service_discovery_v3_AggregatedDiscoveryServiceClient, AggregatedDiscoveryServiceDefinition as _envoy_service_discovery_v3_AggregatedDiscoveryServiceDefinition } from './envoy/service/discovery/v3/AggregatedDiscoveryService';
import type { DeltaDiscoveryRequest as _envoy_service_discovery_v3_DeltaDiscoveryRequest, DeltaDiscoveryRequest__Output as _envoy_service_discovery_v3_DeltaDiscoveryRequest__Output } from './envoy/service/discovery/v3/DeltaDiscoveryRequest';
import type { DeltaDiscoveryResponse as _envoy_service_discovery_v3_DeltaDiscoveryResponse, DeltaDiscoveryResponse__Output as _envoy_service_discovery_v3_DeltaDiscoveryResponse__Output } from './envoy/service/discovery/v3/DeltaDiscoveryResponse';
import type { DiscoveryRequest as _envoy_service_discovery_v3_DiscoveryRequest, DiscoveryRequest__Output as _envoy_service_discovery_v3_DiscoveryRequest__Output } from './envoy/service/discovery/v3/DiscoveryRequest';
import type { DiscoveryResponse as _envoy_service_discovery_v3_DiscoveryResponse, DiscoveryResponse__Output as _envoy_service_discovery_v3_DiscoveryResponse__Output } from './envoy/service/discovery/v3/DiscoveryResponse';
import type { Resource as _envoy_service_discovery_v3_Resource, Resource__Output as _envoy_service_discovery_v3_Resource__Output } from './envoy/service/discovery/v3/Resource';
import type { EndpointDiscoveryServiceClient as _envoy_service_endpoint_v3_EndpointDiscoveryServiceClient, EndpointDiscoveryServiceDefinition as _envoy_service_endpoint_v3_EndpointDiscoveryServiceDefinition } from './envoy/service/endpoint/v3/EndpointDiscoveryService';
import type { ListenerDiscoveryServiceClient as _envoy_service_listener_v3_ListenerDiscoveryServiceClient, ListenerDiscoveryServiceDefinition as _envoy_service_listener_v3_ListenerDiscoveryServiceDefinition } from './envoy/service/listener/v3/ListenerDiscoveryService';
import type { RouteDiscoveryServiceClient as _envoy_service_route_v3_RouteDiscoveryServiceClient, RouteDiscoveryServiceDefinition as _envoy_service_route_v3_RouteDiscoveryServiceDefinition } from './envoy/service/route/v3/RouteDiscoveryService';
import type { StringMatcher as _envoy_type_matcher_v3_StringMatcher, StringMatcher__Output as _envoy_type_matcher_v3_StringMatcher__Output } from './envoy/type/matcher/v3/StringMatcher';
import type { HashPolicy as _envoy_type_v3_HashPolicy, HashPolicy__Output as _envoy_type_v3_HashPolicy__Output } from './envoy/type/v3/HashPolicy';
import type { Percent as _envoy_type_v3_Percent, Percent__Output as _envoy_type_v3_Percent__Output } from './envoy/type/v3/Percent';
import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from './google/protobuf/Any';
import type { BoolValue as _google_protobuf_BoolValue, BoolValue__Output as _google_protobuf_BoolValue__Output } from './google/protobuf/BoolValue';
import type { BytesValue as _google_protobuf_BytesValue, BytesValue__Output as _google_protobuf_BytesValue__Output } from './google/protobuf/BytesValue';
import type { DoubleValue as _google_protobuf_DoubleValue, DoubleValue__Output as _google_protobuf_DoubleValue__Output } from './google/protobuf/DoubleValue';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from './google/protobuf/Duration';
import type { FloatValue as _google_protobuf_FloatValue, FloatValue__Output as _google_protobuf_FloatValue__Output } from './google/protobuf/FloatValue';
import type { Int32Value as _google_protobuf_Int32Value, Int32Value__Output as _google_protobuf_Int32Value__Output } from './google/protobuf/Int32Value';
import type { Int64Value as _google_protobuf_Int64Value, Int64Value__Output as _google_protobuf_Int64Value__Output } from './google/protobuf/Int64Value';
import type { ListValue as _google_protobuf_ListValue, ListValue__Output as _google_protobuf_ListValue__Output } from './google/protobuf/ListValue';
import type { StringValue as _google_protobuf_StringValue, StringValue__Output as _google_protobuf_StringValue__Output } from './google/protobuf/StringValue';
import type { Struct as _google_protobuf_Struct, Struct__Output as _google_protobuf_Struct__Output } from './google/protobuf/Struct';
import type { UInt32Value as _google_protobuf_UInt32Value, UInt32Value__Output as _google_protobuf_UInt32Value__Output } from './google/protobuf/UInt32Value';
import type { UInt64Value as _google_protobuf_UInt64Value, UInt64Value__Output as _google_protobuf_UInt64Value__Output } from './google/protobuf/UInt64Value';
import type { Value as _google_protobuf_Value, Value__Output as _google_protobuf_Value__Output } from './google/protobuf/Value';
import type { Status as _google_rpc_Status, Status__Output as _google_rpc_Status__Output } from './google/rpc/Status';
import type { CertificateRequest as _skein_ca_v1_CertificateRequest, CertificateRequest__Output as _skein_ca_v1_CertificateRequest__Output } from './skein/ca/v1/CertificateRequest';
import type { CertificateResponse as _skein_ca_v1_CertificateResponse, CertificateResponse__Output as _skein_ca_v1_CertificateResponse__Output } from './skein/ca/v1/CertificateResponse';
import type { CertificateServiceClient as _skein_ca_v1_CertificateServiceClient, CertificateServiceDefinition as _skein_ca_v1_CertificateServiceDefinition } from './skein/ca/v1/CertificateService';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  envoy: {
    config: {
      cluster: {
        v3: {
          CircuitBreakers: MessageTypeDefinition<_envoy_config_cluster_v3_CircuitBreakers, _envoy_config_cluster_v3_CircuitBreakers__Output>
          Cluster: MessageTypeDefinition<_envoy_config_cluster_v3_Cluster, _envoy_config_cluster_v3_Cluster__Output>
          OutlierDetection: MessageTypeDefinition<_envoy_config_cluster_v3_OutlierDetection, _envoy_config_cluster_v3_OutlierDetection__Output>
        }
      }
      core: {
        v3: {
          Address: MessageTypeDefinition<_envoy_config_core_v3_Address, _envoy_config_core_v3_Address__Output>
          AggregatedConfigSource: MessageTypeDefinition<_envoy_config_core_v3_AggregatedConfigSource, _envoy_config_core_v3_AggregatedConfigSource__Output>
          ApiConfigSource: MessageTypeDefinition<_envoy_config_core_v3_ApiConfigSource, _envoy_config_core_v3_ApiConfigSource__Output>
          ApiVersion: EnumTypeDefinition
          ConfigSource: MessageTypeDefinition<_envoy_config_core_v3_ConfigSource, _envoy_config_core_v3_ConfigSource__Output>
          ControlPlane: MessageTypeDefinition<_envoy_config_core_v3_ControlPlane, _envoy_config_core_v3_ControlPlane__Output>
          DataSource: MessageTypeDefinition<_envoy_config_core_v3_DataSource, _envoy_config_core_v3_DataSource__Output>
          GrpcService: MessageTypeDefinition<_envoy_config_core_v3_GrpcService, _envoy_config_core_v3_GrpcService__Output>
          HeaderValue: MessageTypeDefinition<_envoy_config_core_v3_HeaderValue, _envoy_config_core_v3_HeaderValue__Output>
          HeaderValueOption: MessageTypeDefinition<_envoy_config_core_v3_HeaderValueOption, _envoy_config_core_v3_HeaderValueOption__Output>
          HealthStatus: EnumTypeDefinition
          Http1ProtocolOptions: MessageTypeDefinition<_envoy_config_core_v3_Http1ProtocolOptions, _envoy_config_core_v3_Http1ProtocolOptions__Output>
          Http2ProtocolOptions: MessageTypeDefinition<_envoy_config_core_v3_Http2ProtocolOptions, _envoy_config_core_v3_Http2ProtocolOptions__Output>
          HttpProtocolOptions: MessageTypeDefinition<_envoy_config_core_v3_HttpProtocolOptions, _envoy_config_core_v3_HttpProtocolOptions__Output>
          Locality: MessageTypeDefinition<_envoy_config_core_v3_Locality, _envoy_config_core_v3_Locality__Output>
          Metadata: MessageTypeDefinition<_envoy_config_core_v3_Metadata, _envoy_config_core_v3_Metadata__Output>
          Node: MessageTypeDefinition<_envoy_config_core_v3_Node, _envoy_config_core_v3_Node__Output>
          SelfConfigSource: MessageTypeDefinition<_envoy_config_core_v3_SelfConfigSource, _envoy_config_core_v3_SelfConfigSource__Output>
          SocketAddress: MessageTypeDefinition<_envoy_config_core_v3_SocketAddress, _envoy_config_core_v3_SocketAddress__Output>
          TrafficDirection: EnumTypeDefinition
          TransportSocket: MessageTypeDefinition<_envoy_config_core_v3_TransportSocket, _envoy_config_core_v3_TransportSocket__Output>
        }
      }
      endpoint: {
        v3: {
          ClusterLoadAssignment: MessageTypeDefinition<_envoy_config_endpoint_v3_ClusterLoadAssignment, _envoy_config_endpoint_v3_ClusterLoadAssignment__Output>
          Endpoint: MessageTypeDefinition<_envoy_config_endpoint_v3_Endpoint, _envoy_config_endpoint_v3_Endpoint__Output>
          LbEndpoint: MessageTypeDefinition<_envoy_config_endpoint_v3_LbEndpoint, _envoy_config_endpoint_v3_LbEndpoint__Output>
          LocalityLbEndpoints: MessageTypeDefinition<_envoy_config_endpoint_v3_LocalityLbEndpoints, _envoy_config_endpoint_v3_LocalityLbEndpoints__Output>
        }
      }
      listener: {
        v3: {
          ApiListener: MessageTypeDefinition<_envoy_config_listener_v3_ApiListener, _envoy_config_listener_v3_ApiListener__Output>
          Filter: MessageTypeDefinition<_envoy_config_listener_v3_Filter, _envoy_config_listener_v3_Filter__Output>
          FilterChain: MessageTypeDefinition<_envoy_config_listener_v3_FilterChain, _envoy_config_listener_v3_FilterChain__Output>
          FilterChainMatch: MessageTypeDefinition<_envoy_config_listener_v3_FilterChainMatch, _envoy_config_listener_v3_FilterChainMatch__Output>
          Listener: MessageTypeDefinition<_envoy_config_listener_v3_Listener, _envoy_config_listener_v3_Listener__Output>
        }
      }
      route: {
        v3: {
          DirectResponseAction: MessageTypeDefinition<_envoy_config_route_v3_DirectResponseAction, _envoy_config_route_v3_DirectResponseAction__Output>
          HeaderMatcher: MessageTypeDefinition<_envoy_config_route_v3_HeaderMatcher, _envoy_config_route_v3_HeaderMatcher__Output>
          NonForwardingAction: MessageTypeDefinition<_envoy_config_route_v3_NonForwardingAction, _envoy_config_route_v3_NonForwardingAction__Output>
          RetryPolicy: MessageTypeDefinition<_envoy_config_route_v3_RetryPolicy, _envoy_config_route_v3_RetryPolicy__Output>
          Route: MessageTypeDefinition<_envoy_config_route_v3_Route, _envoy_config_route_v3_Route__Output>
          RouteAction: MessageTypeDefinition<_envoy_config_route_v3_RouteAction, _envoy_config_route_v3_RouteAction__Output>
          RouteConfiguration: MessageTypeDefinition<_envoy_config_route_v3_RouteConfiguration, _envoy_config_route_v3_RouteConfiguration__Output>
          RouteMatch: MessageTypeDefinition<_envoy_config_route_v3_RouteMatch, _envoy_config_route_v3_RouteMatch__Output>
          Vhds: MessageTypeDefinition<_envoy_config_route_v3_Vhds, _envoy_config_route_v3_Vhds__Output>
          VirtualHost: MessageTypeDefinition<_envoy_config_route_v3_VirtualHost, _envoy_config_route_v3_VirtualHost__Output>
          WeightedCluster: MessageTypeDefinition<_envoy_config_route_v3_WeightedCluster, _envoy_config_route_v3_WeightedCluster__Output>
        }
      }
    }
    extensions: {
      filters: {
        http: {
          router: {
            v3: {
              Router: MessageTypeDefinition<_envoy_extensions_filters_http_router_v3_Router, _envoy_extensions_filters_http_router_v3_Router__Output>
            }
          }
        }
        network: {
          http_connection_manager: {
            v3: {
              HttpConnectionManager: MessageTypeDefinition<_envoy_extensions_filters_network_http_connection_manager_v3_HttpConnectionManager, _envoy_extensions_filters_network_http_connection_manager_v3_HttpConnectionManager__Output>
              HttpFilter: MessageTypeDefinition<_envoy_extensions_filters_network_http_connection_manager_v3_HttpFilter, _envoy_extensions_filters_network_http_connection_manager_v3_HttpFilter__Output>
              Rds: MessageTypeDefinition<_envoy_extensions_filters_network_http_connection_manager_v3_Rds, _envoy_extensions_filters_network_http_connection_manager_v3_Rds__Output>
            }
          }
          tcp_proxy: {
            v3: {
              TcpProxy: MessageTypeDefinition<_envoy_extensions_filters_network_tcp_proxy_v3_TcpProxy, _envoy_extensions_filters_network_tcp_proxy_v3_TcpProxy__Output>
            }
          }
        }
      }
      upstreams: {
        http: {
          v3: {
            HttpProtocolOptions: MessageTypeDefinition<_envoy_extensions_upstreams_http_v3_HttpProtocolOptions, _envoy_extensions_upstreams_http_v3_HttpProtocolOptions__Output>
          }
        }
      }
    }
    service: {
      cluster: {
        v3: {
          ClusterDiscoveryService: SubtypeConstructor<typeof grpc.Client, _envoy_service_cluster_v3_ClusterDiscoveryServiceClient> & { service: _envoy_service_cluster_v3_ClusterDiscoveryServiceDefinition }
        }
      }
      discovery: {
        v3: {
          AggregatedDiscoveryService: SubtypeConstructor<typeof grpc.Client, _envoy_service_discovery_v3_AggregatedDiscoveryServiceClient> & { service: _envoy_service_discovery_v3_AggregatedDiscoveryServiceDefinition }
          DeltaDiscoveryRequest: MessageTypeDefinition<_envoy_service_discovery_v3_DeltaDiscoveryRequest, _envoy_service_discovery_v3_DeltaDiscoveryRequest__Output>
          DeltaDiscoveryResponse: MessageTypeDefinition<_envoy_service_discovery_v3_DeltaDiscoveryResponse, _envoy_service_discovery_v3_DeltaDiscoveryResponse__Output>
          DiscoveryRequest: MessageTypeDefinition<_envoy_service_discovery_v3_DiscoveryRequest, _envoy_service_discovery_v3_DiscoveryRequest__Output>
          DiscoveryResponse: MessageTypeDefinition<_envoy_service_discovery_v3_DiscoveryResponse, _envoy_service_discovery_v3_DiscoveryResponse__Output>
          Resource: MessageTypeDefinition<_envoy_service_discovery_v3_Resource, _envoy_service_discovery_v3_Resource__Output>
        }
      }
      endpoint: {
        v3: {
          EndpointDiscoveryService: SubtypeConstructor<typeof grpc.Client, _envoy_service_endpoint_v3_EndpointDiscoveryServiceClient> & { service: _envoy_service_endpoint_v3_EndpointDiscoveryServiceDefinition }
        }
      }
      listener: {
        v3: {
          ListenerDiscoveryService: SubtypeConstructor<typeof grpc.Client, _envoy_service_listener_v3_ListenerDiscoveryServiceClient> & { service: _envoy_service_listener_v3_ListenerDiscoveryServiceDefinition }
        }
      }
      route: {
        v3: {
          RouteDiscoveryService: SubtypeConstructor<typeof grpc.Client, _envoy_service_route_v3_RouteDiscoveryServiceClient> & { service: _envoy_service_route_v3_RouteDiscoveryServiceDefinition }
        }
      }
    }
    type: {
      matcher: {
        v3: {
          StringMatcher: MessageTypeDefinition<_envoy_type_matcher_v3_StringMatcher, _envoy_type_matcher_v3_StringMatcher__Output>
        }
      }
      v3: {
        HashPolicy: MessageTypeDefinition<_envoy_type_v3_HashPolicy, _envoy_type_v3_HashPolicy__Output>
        Percent: MessageTypeDefinition<_envoy_type_v3_Percent, _envoy_type_v3_Percent__Output>
      }
    }
  }
  google: {
    protobuf: {
      Any: MessageTypeDefinition<_google_protobuf_Any, _google_protobuf_Any__Output>
      BoolValue: MessageTypeDefinition<_google_protobuf_BoolValue, _google_protobuf_BoolValue__Output>
      BytesValue: MessageTypeDefinition<_google_protobuf_BytesValue, _google_protobuf_BytesValue__Output>
      DoubleValue: MessageTypeDefinition<_google_protobuf_DoubleValue, _google_protobuf_DoubleValue__Output>
      Duration: MessageTypeDefinition<_google_protobuf_Duration, _google_protobuf_Duration__Output>
      FloatValue: MessageTypeDefinition<_google_protobuf_FloatValue, _google_protobuf_FloatValue__Output>
      Int32Value: MessageTypeDefinition<_google_protobuf_Int32Value, _google_protobuf_Int32Value__Output>
      Int64Value: MessageTypeDefinition<_google_protobuf_Int64Value, _google_protobuf_Int64Value__Output>
      ListValue: MessageTypeDefinition<_google_protobuf_ListValue, _google_protobuf_ListValue__Output>
      NullValue: EnumTypeDefinition
      StringValue: MessageTypeDefinition<_google_protobuf_StringValue, _google_protobuf_StringValue__Output>
      Struct: MessageTypeDefinition<_google_protobuf_Struct, _google_protobuf_Struct__Output>
      UInt32Value: MessageTypeDefinition<_google_protobuf_UInt32Value, _google_protobuf_UInt32Value__Output>
      UInt64Value: MessageTypeDefinition<_google_protobuf_UInt64Value, _google_protobuf_UInt64Value__Output>
      Value: MessageTypeDefinition<_google_protobuf_Value, _google_protobuf_Value__Output>
    }
    rpc: {
      Status: MessageTypeDefinition<_google_rpc_Status, _google_rpc_Status__Output>
    }
  }
  skein: {
    ca: {
      v1: {
        CertificateRequest: MessageTypeDefinition<_skein_ca_v1_CertificateRequest, _skein_ca_v1_CertificateRequest__Output>
        CertificateResponse: MessageTypeDefinition<_skein_ca_v1_CertificateResponse, _skein_ca_v1_CertificateResponse__Output>
        CertificateService: SubtypeConstructor<typeof grpc.Client, _skein_ca_v1_CertificateServiceClient> & { service: _skein_ca_v1_CertificateServiceDefinition }
      }
    }
  }
}

