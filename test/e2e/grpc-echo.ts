// The echo gRPC servers and the registry file that the proxyless interop tests (grpc-js-xds, gRPC C-core) share.
import { spawnSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { dump } from 'js-yaml';

export const SERVICE_PORT = 50051;

/** A python3 that imports grpcio (Debian's python3-grpcio, installed by .ci/system-packages.sh), or undefined. */
export function pythonWithGrpc(): string | undefined {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(candidate, ['-c', 'import grpc'], { encoding: 'utf8', timeout: 20_000 });
    if (r.status === 0) return candidate;
  }
  return undefined;
}

export const ECHO_PROTO = `syntax = "proto3";
package skein.e2e;
message EchoRequest { string message = 1; }
message EchoReply { string server = 1; string message = 2; }
service Echo { rpc Echo (EchoRequest) returns (EchoReply); }
`;

export interface EchoServer {
  readonly name: string;
  readonly port: number;
  readonly server: grpc.Server;
}

export async function startEchoServer(protoPath: string, name: string): Promise<EchoServer> {
  const pkg = grpc.loadPackageDefinition(loadSync(protoPath, { keepCase: true })) as unknown as {
    skein: { e2e: { Echo: grpc.ServiceClientConstructor } };
  };
  const server = new grpc.Server();
  server.addService(pkg.skein.e2e.Echo.service, {
    Echo: (call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { server: name, message: call.request.message }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { name, port, server };
}

/** Where a server's endpoint sits (its zone) and whether its pod is terminating (still serving). */
export interface Placement {
  readonly zone?: string;
  readonly terminating?: boolean;
}

/** One Service of the registry: its name in namespace `default`, the servers behind it and where they sit. */
export interface EchoService {
  readonly name: string;
  readonly servers: readonly EchoServer[];
  readonly placement?: Readonly<Record<string, Placement>>;
  readonly annotations?: Readonly<Record<string, string>>;
  /** Kubernetes `spec.sessionAffinity` (None by default). */
  readonly sessionAffinity?: 'ClientIP' | 'None';
}

/** Each Service: gRPC port 50051 → named targetPort, one EndpointSlice and one Pod per server. */
function registryObjects(services: readonly EchoService[]): object[] {
  const objects: object[] = [];
  services.forEach(({ name, servers, placement = {}, annotations, sessionAffinity }, i) => {
    objects.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'default', ...(annotations ? { annotations } : {}) },
      spec: {
        clusterIP: `10.96.0.${50 + i}`,
        ...(sessionAffinity ? { sessionAffinity } : {}),
        selector: { app: name },
        ports: [{ name: 'grpc', port: SERVICE_PORT, targetPort: 'grpc', appProtocol: 'grpc', protocol: 'TCP' }],
      },
    });
    for (const s of servers) {
      const { zone, terminating = false } = placement[s.name] ?? {};
      const pod = `${name}-${s.name}`;
      // The servers share 127.0.0.1, so each needs its own slice: a slice's ports apply to all of its endpoints.
      objects.push(
        {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { name: pod, namespace: 'default', labels: { 'kubernetes.io/service-name': name } },
          addressType: 'IPv4',
          ports: [{ name: 'grpc', port: s.port, protocol: 'TCP' }],
          endpoints: [
            {
              addresses: ['127.0.0.1'],
              conditions: { ready: !terminating, serving: true, terminating },
              ...(zone ? { zone } : {}),
              targetRef: { kind: 'Pod', name: pod, namespace: 'default' },
            },
          ],
        },
        {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: pod, namespace: 'default', labels: { app: name } },
          spec: { serviceAccountName: name, containers: [{ name, image: `${name}:1` }] },
          status: { phase: 'Running', podIP: '127.0.0.1' },
        },
      );
    }
  });
  return objects;
}

/** Writes the registry file whole and renames it into place, as an editor or a deploy step would. */
export function writeRegistry(path: string, services: readonly EchoService[]): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, registryObjects(services).map((o) => dump(o, { noRefs: true })).join('---\n'));
  renameSync(tmp, path);
}
