// Original file: proto/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from '../../../../../../google/protobuf/Any';

export interface HttpFilter {
  'name'?: (string);
  'typed_config'?: (_google_protobuf_Any | null);
  'is_optional'?: (boolean);
  'config_type'?: "typed_config";
}

export interface HttpFilter__Output {
  'name': (string);
  'typed_config'?: (_google_protobuf_Any__Output | null);
  'is_optional': (boolean);
  'config_type'?: "typed_config";
}
