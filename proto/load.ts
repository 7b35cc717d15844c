// Loads Skein's .proto files once: gRPC service definitions for grpc-js, and message types for Any payloads.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { loadPackageDefinition } from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import type { ProtoGrpcType as MeshGrpcType } from './generated/mesh.ts';

export const PROTO_ROOT = fileURLToPath(new URL('.', import.meta.url));

/** Every top-level file; their imports pull in the rest. */
export const PROTO_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/cluster/v3/cds.proto',
  'envoy/service/endpoint/v3/eds.proto',
  'envoy/service/listener/v3/lds.proto',
  'envoy/service/route/v3/rds.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'skein/ca/v1/ca.proto',
] as const;

/** How decoded messages look: Envoy's snake_case names, enums as names, 64-bit ints as strings, defaults filled. */
export const CONVERSION = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

let grpcTypes: MeshGrpcType | undefined;

/**
 * The grpc-js package definition holding the ADS and CA services (for servers: the control plane). @grpc/proto-loader
 * is required only here, on first use: the sidecar builds its clients from messageRoot() instead (clients.ts).
 */
export function grpcDefinitions(): MeshGrpcType {
  if (!grpcTypes) {
    const { loadSync } = createRequire(import.meta.url)('@grpc/proto-loader') as typeof protoLoader;
    const definition = loadSync([...PROTO_FILES], { ...CONVERSION, includeDirs: [PROTO_ROOT] });
    grpcTypes = loadPackageDefinition(definition) as unknown as MeshGrpcType;
  }
  return grpcTypes;
}

let root: protobuf.Root | undefined;

/** The protobufjs root with every message type, for encoding and decoding Any payloads. */
export function messageRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => {
      // google/protobuf/* well-known types are built into protobufjs; the rest live here.
      if (target.startsWith('google/protobuf/')) return target;
      return `${PROTO_ROOT}${target}`;
    };
    r.loadSync([...PROTO_FILES], { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

export type GrpcServiceDefinition = grpc.ServiceDefinition;
