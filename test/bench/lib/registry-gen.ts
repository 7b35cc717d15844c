// Generates a realistic registry file (Services, EndpointSlices, Pods) for the benchmarks and rewrites it atomically.
import { renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { dump } from 'js-yaml';

export interface MeshShape {
  readonly services: number;
  readonly endpointsPerService: number;
  readonly namespaces: number;
}

interface ServiceModel {
  readonly name: string;
  readonly namespace: string;
  /** Service ports; the first is the one whose cluster the benchmark watches. */
  readonly ports: readonly { name: string; port: number; targetPort: string; appProtocol?: string; container: number }[];
  readonly clusterIP: string;
  /** Current pod IP per endpoint index. */
  readonly ips: string[];
}

/** A change the benchmark makes: one endpoint of one Service gets a new IP; proxies look for it in `cluster`. */
export interface EndpointChange {
  readonly service: string;
  readonly namespace: string;
  readonly cluster: string;
  readonly ip: string;
}

export function namespaceName(i: number): string {
  return `team-${i}`;
}

const YAML_OPTIONS = { lineWidth: -1, noRefs: true } as const;

/**
 * An in-memory mesh that renders to a multi-document YAML registry file. Each object's YAML is cached and only
 * the objects a change touches are rendered again, so a rewrite costs a string join, not a full stringify.
 */
export class GeneratedRegistry {
  readonly path: string;
  readonly shape: MeshShape;
  private readonly services: ServiceModel[] = [];
  /** Rendered YAML documents: per service [Service, EndpointSlice, Pod × endpoints]. */
  private readonly docs: string[][] = [];
  private nextChangeIp = 0;
  private nextService = 0;
  private nextAdded = 0;

  constructor(path: string, shape: MeshShape) {
    this.path = path;
    this.shape = shape;
    for (let s = 0; s < shape.services; s++) {
      const namespace = namespaceName(s % shape.namespaces);
      const name = `svc-${s}`;
      const ports: ServiceModel['ports'][number][] = [{ name: 'http', port: 80, targetPort: 'http', container: 8080 }];
      if (s % 10 === 3) ports.push({ name: 'grpc', port: 9090, targetPort: 'grpc', appProtocol: 'grpc', container: 9090 });
      if (s % 10 === 7) ports.push({ name: 'tcp-db', port: 5432, targetPort: 'tcp-db', container: 5432 });
      const ips: string[] = [];
      for (let e = 0; e < shape.endpointsPerService; e++) {
        const n = s * shape.endpointsPerService + e;
        ips.push(`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`);
      }
      const model: ServiceModel = {
        name,
        namespace,
        ports,
        clusterIP: `10.96.${(s >> 8) & 255}.${s & 255}`,
        ips,
      };
      this.services.push(model);
      this.docs.push(this.render(model));
    }
  }

  /** The cluster name proxies see for a Service's first port. */
  static clusterOf(service: string, namespace: string, port = 80): string {
    return `outbound|${port}||${service}.${namespace}.svc.cluster.local`;
  }

  /** Writes the whole file atomically: a temp file in the same directory, then rename. */
  write(): void {
    const text = this.docs.map((d) => d.join('---\n')).join('---\n');
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, this.path);
  }

  /**
   * Changes one endpoint's IP in each of the next `count` one-port Services (never the same Service twice per run), so
   * every change is one ClusterLoadAssignment in both modes: a two-port Service would send two and skew bytes/change.
   */
  changeEndpoints(count: number): EndpointChange[] {
    const out: EndpointChange[] = [];
    for (let k = 0; k < count; k++) {
      let index = this.nextService;
      this.nextService = (this.nextService + 37) % this.services.length; // 37 is coprime with 1000: every Service once
      for (let tries = 0; (this.services[index]?.ports.length ?? 1) > 1 && tries < this.services.length; tries++) {
        index = this.nextService;
        this.nextService = (this.nextService + 37) % this.services.length;
      }
      const svc = this.services[index];
      if (!svc) throw new Error(`no service ${index}`);
      const n = this.nextChangeIp++;
      const ip = `10.${200 + ((n >> 16) & 31)}.${(n >> 8) & 255}.${n & 255}`;
      const endpoint = n % svc.ips.length;
      svc.ips[endpoint] = ip;
      this.docs[index] = this.render(svc);
      out.push({
        service: svc.name,
        namespace: svc.namespace,
        cluster: GeneratedRegistry.clusterOf(svc.name, svc.namespace, svc.ports[0]?.port),
        ip,
      });
    }
    return out;
  }

  /**
   * Adds a Service (one HTTP port, `endpointsPerService` endpoints, fresh IPs) at the end of the file: a change
   * that touches CDS (a new cluster) besides EDS. Returns its cluster and one of its IPs for proxies to look for.
   */
  addService(): EndpointChange {
    const s = this.services.length;
    const namespace = namespaceName(s % this.shape.namespaces);
    const name = `svc-added-${this.nextAdded++}`;
    const ips: string[] = [];
    for (let e = 0; e < this.shape.endpointsPerService; e++) {
      const n = this.nextChangeIp++;
      ips.push(`10.${232 + ((n >> 16) & 15)}.${(n >> 8) & 255}.${n & 255}`);
    }
    const model: ServiceModel = {
      name,
      namespace,
      ports: [{ name: 'http', port: 80, targetPort: 'http', container: 8080 }],
      clusterIP: `10.97.${(s >> 8) & 255}.${s & 255}`,
      ips,
    };
    this.services.push(model);
    this.docs.push(this.render(model));
    return { service: name, namespace, cluster: GeneratedRegistry.clusterOf(name, namespace), ip: ips[0] as string };
  }

  /** Removes the last Service addService() added (its cluster disappears from CDS); false when there is none. */
  removeAddedService(): boolean {
    const last = this.services[this.services.length - 1];
    if (!last?.name.startsWith('svc-added-')) return false;
    this.services.pop();
    this.docs.pop();
    return true;
  }

  /** Every cluster name a sidecar should see (one per Service port). */
  clusterNames(): string[] {
    return this.services.flatMap((s) => s.ports.map((p) => GeneratedRegistry.clusterOf(s.name, s.namespace, p.port)));
  }

  private render(svc: ServiceModel): string[] {
    const labels = { app: svc.name, 'app.kubernetes.io/part-of': svc.namespace };
    const service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: svc.name, namespace: svc.namespace, labels },
      spec: {
        type: 'ClusterIP',
        clusterIP: svc.clusterIP,
        selector: { app: svc.name },
        ports: svc.ports.map((p) => ({
          name: p.name,
          port: p.port,
          targetPort: p.targetPort,
          protocol: 'TCP',
          ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
        })),
      },
    };
    const pods = svc.ips.map((ip, e) => ({ name: `${svc.name}-${podSuffix(e)}`, ip, zone: `zone-${e % 3}` }));
    const slice = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${svc.name}-x7k2p`,
        namespace: svc.namespace,
        labels: {
          'kubernetes.io/service-name': svc.name,
          'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        },
      },
      addressType: 'IPv4',
      ports: svc.ports.map((p) => ({ name: p.name, port: p.container, protocol: 'TCP' })),
      endpoints: pods.map((p) => ({
        addresses: [p.ip],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: `node-${p.zone}`,
        zone: p.zone,
        targetRef: { kind: 'Pod', name: p.name, namespace: svc.namespace },
      })),
    };
    const podDocs = pods.map((p) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: p.name,
        namespace: svc.namespace,
        labels,
        annotations: { 'skein.dev/inbound-port': '15006' },
      },
      spec: {
        serviceAccountName: svc.name,
        nodeName: `node-${p.zone}`,
        containers: [
          {
            name: 'app',
            image: `registry.example/${svc.name}:1.4.2`,
            ports: svc.ports.map((port) => ({ name: port.name, containerPort: port.container, protocol: 'TCP' })),
          },
        ],
      },
      status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] },
    }));
    return [service, slice, ...podDocs].map((o) => dump(o, YAML_OPTIONS));
  }
}

function podSuffix(e: number): string {
  return `7d9f8c6b5-${(e * 7919 + 10007).toString(36).slice(-5)}`;
}
