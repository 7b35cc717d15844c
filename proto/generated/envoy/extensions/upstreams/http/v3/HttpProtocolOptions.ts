// Original file: proto/envoy/extensions/upstreams/http/v3/http_protocol_options.proto

import type { Http1ProtocolOptions as _envoy_config_core_v3_Http1ProtocolOptions, Http1ProtocolOptions__Output as _envoy_config_core_v3_Http1ProtocolOptions__Output } from '../../../../../envoy/config/core/v3/Http1ProtocolOptions';
import type { Http2ProtocolOptions as _envoy_config_core_v3_Http2ProtocolOptions, Http2ProtocolOptions__Output as _envoy_config_core_v3_Http2ProtocolOptions__Output } from '../../../../../envoy/config/core/v3/Http2ProtocolOptions';

export interface _envoy_extensions_upstreams_http_v3_HttpProtocolOptions_ExplicitHttpConfig {
  'http_protocol_options'?: (_envoy_config_core_v3_Http1ProtocolOptions | null);
  'http2_protocol_options'?: (_envoy_config_core_v3_Http2ProtocolOptions | null);
  'protocol_config'?: "http_protocol_options"|"http2_protocol_options";
}

export interface _envoy_extensions_upstreams_http_v3_HttpProtocolOptions_ExplicitHttpConfig__Output {
  'http_protocol_options'?: (_envoy_config_core_v3_Http1ProtocolOptions__Output | null);
  'http2_protocol_options'?: (_envoy_config_core_v3_Http2ProtocolOptions__Output | null);
  'protocol_config'?: "http_protocol_options"|"http2_protocol_options";
}

export interface HttpProtocolOptions {
  'explicit_http_config'?: (_envoy_extensions_upstreams_http_v3_HttpProtocolOptions_ExplicitHttpConfig | null);
  'upstream_protocol_options'?: "explicit_http_config";
}

export interface HttpProtocolOptions__Output {
  'explicit_http_config'?: (_envoy_extensions_upstreams_http_v3_HttpProtocolOptions_ExplicitHttpConfig__Output | null);
  'upstream_protocol_options'?: "explicit_http_config";
}
