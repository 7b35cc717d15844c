// Original file: proto/envoy/config/route/v3/route.proto

import type { VirtualHost as _envoy_config_route_v3_VirtualHost, VirtualHost__Output as _envoy_config_route_v3_VirtualHost__Output } from '../../../../envoy/config/route/v3/VirtualHost';
import type { BoolValue as _google_protobuf_BoolValue, BoolValue__Output as _google_protobuf_BoolValue__Output } from '../../../../google/protobuf/BoolValue';
import type { Vhds as _envoy_config_route_v3_Vhds, Vhds__Output as _envoy_config_route_v3_Vhds__Output } from '../../../../envoy/config/route/v3/Vhds';

export interface RouteConfiguration {
  'name'?: (string);
  'virtual_hosts'?: (_envoy_config_route_v3_VirtualHost)[];
  'validate_clusters'?: (_google_protobuf_BoolValue | null);
  'vhds'?: (_envoy_config_route_v3_Vhds | null);
}

export interface RouteConfiguration__Output {
  'name': (string);
  'virtual_hosts': (_envoy_config_route_v3_VirtualHost__Output)[];
  'validate_clusters': (_google_protobuf_BoolValue__Output | null);
  'vhds': (_envoy_config_route_v3_Vhds__Output | null);
}
