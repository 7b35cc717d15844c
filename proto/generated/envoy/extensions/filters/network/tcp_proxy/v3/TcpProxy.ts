// Original file: proto/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../../../../../google/protobuf/Duration';

export interface TcpProxy {
  'stat_prefix'?: (string);
  'cluster'?: (string);
  'idle_timeout'?: (_google_protobuf_Duration | null);
  'cluster_specifier'?: "cluster";
}

export interface TcpProxy__Output {
  'stat_prefix': (string);
  'cluster'?: (string);
  'idle_timeout': (_google_protobuf_Duration__Output | null);
  'cluster_specifier'?: "cluster";
}
