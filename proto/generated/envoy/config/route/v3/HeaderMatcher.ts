// Original file: proto/envoy/config/route/v3/route_components.proto

import type { StringMatcher as _envoy_type_matcher_v3_StringMatcher, StringMatcher__Output as _envoy_type_matcher_v3_StringMatcher__Output } from '../../../../envoy/type/matcher/v3/StringMatcher';

export interface HeaderMatcher {
  'name'?: (string);
  'present_match'?: (boolean);
  'invert_match'?: (boolean);
  'string_match'?: (_envoy_type_matcher_v3_StringMatcher | null);
  'header_match_specifier'?: "present_match"|"string_match";
}

export interface HeaderMatcher__Output {
  'name': (string);
  'present_match'?: (boolean);
  'invert_match': (boolean);
  'string_match'?: (_envoy_type_matcher_v3_StringMatcher__Output | null);
  'header_match_specifier'?: "present_match"|"string_match";
}
