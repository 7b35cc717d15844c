// Keeps the demo's registry file (Services, EndpointSlices, Pods) in step with the replicas that run.
import { writeRegistryFile } from '../../control-plane/registry/file.ts';

export interface ServiceSpec {
  readonly name: string;
  readonly replicas: number;
  readonly serviceAccount: string;
}

export interface Replica {
  readonly service: string;
  readonly pod: string;
  readonly ip: string;
  readonly port: number;
  readonly serviceAccount: string;
}

interface Member {
  readonly replica: Replica;
  terminating: boolean;
}

export class RegistryWriter {
  readonly path: string;
  readonly #namespace: string;
  readonly #services: readonly ServiceSpec[];
  readonly #members = new Map<string, Member>();

  constructor(path: string, namespace: string, services: readonly ServiceSpec[]) {
    this.path = path;
    this.#namespace = namespace;
    this.#services = services;
  }

  add(replica: Replica): void {
    this.#members.set(replica.pod, { replica, terminating: false });
  }

  /** Kubernetes' order when a pod is deleted: still serving, no longer ready, terminating. */
  markTerminating(replica: Replica): void {
    const member = this.#members.get(replica.pod);
    if (member) member.terminating = true;
  }

  remove(replica: Replica): void {
    this.#members.delete(replica.pod);
  }

  endpointsOf(service: string): { ready: number; terminating: number } {
    let ready = 0;
    let terminating = 0;
    for (const m of this.#members.values()) {
      if (m.replica.service !== service) continue;
      if (m.terminating) terminating++;
      else ready++;
    }
    return { ready, terminating };
  }

  flush(): Promise<void> {
    const ns = this.#namespace;
    const objects: object[] = [];
    for (const svc of this.#services) {
      objects.push({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: svc.name, namespace: ns, labels: { app: svc.name } },
        spec: { selector: { app: svc.name }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] },
      });
      const members = [...this.#members.values()].filter((m) => m.replica.service === svc.name);
      objects.push({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${svc.name}-demo`, namespace: ns, labels: { 'kubernetes.io/service-name': svc.name } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: members.map((m) => ({
          addresses: [m.replica.ip],
          conditions: { ready: !m.terminating, serving: true, terminating: m.terminating },
          targetRef: { kind: 'Pod', name: m.replica.pod, namespace: ns },
        })),
      });
      for (const m of members) {
        objects.push({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: m.replica.pod, namespace: ns, labels: { app: svc.name }, annotations: { 'skein.dev/inbound-port': '15006' } },
          spec: { serviceAccountName: m.replica.serviceAccount, containers: [{ name: svc.name, image: 'local' }] },
          status: { podIP: m.replica.ip },
        });
      }
    }
    // Only the app may call kv (mTLS identity demo/app); the load generator's direct call is refused with a 403.
    objects.push({
      apiVersion: 'skein.dev/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'kv-callers', namespace: ns },
      spec: {
        targetRefs: [{ kind: 'Service', name: 'kv' }],
        action: 'ALLOW',
        rules: [{ from: [{ source: { principals: [`${ns}/app`] } }] }],
      },
    });
    return Promise.resolve(writeRegistryFile(this.path, objects));
  }
}
