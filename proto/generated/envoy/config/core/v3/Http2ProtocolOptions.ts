// Original file: proto/envoy/config/core/v3/protocol.proto

import type { UInt32Value as _google_protobuf_UInt32Value, UInt32Value__Output as _google_protobuf_UInt32Value__Output } from '../../../../google/protobuf/UInt32Value';

export interface Http2ProtocolOptions {
  'max_concurrent_streams'?: (_google_protobuf_UInt32Value | null);
}

export interface Http2ProtocolOptions__Output {
  'max_concurrent_streams': (_google_protobuf_UInt32Value__Output | null);
}
