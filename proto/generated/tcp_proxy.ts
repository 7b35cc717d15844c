import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { TcpProxy as _envoy_extensions_filters_network_tcp_proxy_v3_TcpProxy, TcpProxy__Output as _envoy_extensions_filters_network_tcp_proxy_v3_TcpProxy__Output } from './envoy/extensions/filters/network/tcp_proxy/v3/TcpProxy';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from './google/protobuf/Duration';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  envoy: {
    extensions: {
      filters: {
        network: {
          tcp_proxy: {
            v3: {
              TcpProxy: MessageTypeDefinition<_envoy_extensions_filters_network_tcp_proxy_v3_TcpProxy, _envoy_extensions_filters_network_tcp_proxy_v3_TcpProxy__Output>
            }
          }
        }
      }
    }
  }
  google: {
    protobuf: {
      Duration: MessageTypeDefinition<_google_protobuf_Duration, _google_protobuf_Duration__Output>
    }
  }
}

