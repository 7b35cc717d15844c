// Original file: proto/envoy/config/route/v3/route_components.proto

import type { WeightedCluster as _envoy_config_route_v3_WeightedCluster, WeightedCluster__Output as _envoy_config_route_v3_WeightedCluster__Output } from '../../../../envoy/config/route/v3/WeightedCluster';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../../../google/protobuf/Duration';
import type { RetryPolicy as _envoy_config_route_v3_RetryPolicy, RetryPolicy__Output as _envoy_config_route_v3_RetryPolicy__Output } from '../../../../envoy/config/route/v3/RetryPolicy';

export interface _envoy_config_route_v3_RouteAction_HashPolicy_ConnectionProperties {
  'source_ip'?: (boolean);
}

export interface _envoy_config_route_v3_RouteAction_HashPolicy_ConnectionProperties__Output {
  'source_ip': (boolean);
}

export interface _envoy_config_route_v3_RouteAction_HashPolicy_FilterState {
  'key'?: (string);
}

export interface _envoy_config_route_v3_RouteAction_HashPolicy_FilterState__Output {
  'key': (string);
}

export interface _envoy_config_route_v3_RouteAction_HashPolicy {
  'header'?: (_envoy_config_route_v3_RouteAction_HashPolicy_Header | null);
  'connection_properties'?: (_envoy_config_route_v3_RouteAction_HashPolicy_ConnectionProperties | null);
  'filter_state'?: (_envoy_config_route_v3_RouteAction_HashPolicy_FilterState | null);
  'terminal'?: (boolean);
  'policy_specifier'?: "header"|"connection_properties"|"filter_state";
}

export interface _envoy_config_route_v3_RouteAction_HashPolicy__Output {
  'header'?: (_envoy_config_route_v3_RouteAction_HashPolicy_Header__Output | null);
  'connection_properties'?: (_envoy_config_route_v3_RouteAction_HashPolicy_ConnectionProperties__Output | null);
  'filter_state'?: (_envoy_config_route_v3_RouteAction_HashPolicy_FilterState__Output | null);
  'terminal': (boolean);
  'policy_specifier'?: "header"|"connection_properties"|"filter_state";
}

export interface _envoy_config_route_v3_RouteAction_HashPolicy_Header {
  'header_name'?: (string);
}

export interface _envoy_config_route_v3_RouteAction_HashPolicy_Header__Output {
  'header_name': (string);
}

export interface _envoy_config_route_v3_RouteAction_MaxStreamDuration {
  'max_stream_duration'?: (_google_protobuf_Duration | null);
  'grpc_timeout_header_max'?: (_google_protobuf_Duration | null);
}

export interface _envoy_config_route_v3_RouteAction_MaxStreamDuration__Output {
  'max_stream_duration': (_google_protobuf_Duration__Output | null);
  'grpc_timeout_header_max': (_google_protobuf_Duration__Output | null);
}

export interface RouteAction {
  'cluster'?: (string);
  'weighted_clusters'?: (_envoy_config_route_v3_WeightedCluster | null);
  'prefix_rewrite'?: (string);
  'host_rewrite_literal'?: (string);
  'timeout'?: (_google_protobuf_Duration | null);
  'retry_policy'?: (_envoy_config_route_v3_RetryPolicy | null);
  'hash_policy'?: (_envoy_config_route_v3_RouteAction_HashPolicy)[];
  'idle_timeout'?: (_google_protobuf_Duration | null);
  'max_stream_duration'?: (_envoy_config_route_v3_RouteAction_MaxStreamDuration | null);
  'cluster_specifier'?: "cluster"|"weighted_clusters";
  'host_rewrite_specifier'?: "host_rewrite_literal";
}

export interface RouteAction__Output {
  'cluster'?: (string);
  'weighted_clusters'?: (_envoy_config_route_v3_WeightedCluster__Output | null);
  'prefix_rewrite': (string);
  'host_rewrite_literal'?: (string);
  'timeout': (_google_protobuf_Duration__Output | null);
  'retry_policy': (_envoy_config_route_v3_RetryPolicy__Output | null);
  'hash_policy': (_envoy_config_route_v3_RouteAction_HashPolicy__Output)[];
  'idle_timeout': (_google_protobuf_Duration__Output | null);
  'max_stream_duration': (_envoy_config_route_v3_RouteAction_MaxStreamDuration__Output | null);
  'cluster_specifier'?: "cluster"|"weighted_clusters";
  'host_rewrite_specifier'?: "host_rewrite_literal";
}
