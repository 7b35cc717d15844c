// Original file: proto/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../../../../../google/protobuf/Duration';
import type { HashPolicy as _envoy_type_v3_HashPolicy, HashPolicy__Output as _envoy_type_v3_HashPolicy__Output } from '../../../../../../envoy/type/v3/HashPolicy';

export interface TcpProxy {
  'stat_prefix'?: (string);
  'cluster'?: (string);
  'idle_timeout'?: (_google_protobuf_Duration | null);
  'hash_policy'?: (_envoy_type_v3_HashPolicy)[];
  'cluster_specifier'?: "cluster";
}

export interface TcpProxy__Output {
  'stat_prefix': (string);
  'cluster'?: (string);
  'idle_timeout': (_google_protobuf_Duration__Output | null);
  'hash_policy': (_envoy_type_v3_HashPolicy__Output)[];
  'cluster_specifier'?: "cluster";
}
