// Naming rules shared by every resource kind: FQDNs, cluster names, vhost domains and port protocol detection.
import type { V1Service, V1ServicePort } from '@kubernetes/client-node';

export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

/** What an upstream port speaks, as the sidecar and Envoy need to know it. */
export type PortProtocol = 'http' | 'http2' | 'tcp';

/** `<name>.<namespace>.svc.<clusterDomain>`, lower-cased. */
export function serviceFqdn(name: string, namespace: string, clusterDomain = DEFAULT_CLUSTER_DOMAIN): string {
  return `${name}.${namespace}.svc.${clusterDomain}`.toLowerCase();
}

/** Istio's cluster naming: `outbound|<port>||<fqdn>`. */
export function clusterName(port: number, fqdn: string): string {
  return `outbound|${port}||${fqdn}`;
}

/** `<fqdn>:<port>`: the name of a Service port's virtual host, proxyless listener and proxyless route table. */
export function hostPort(fqdn: string, port: number): string {
  return `${fqdn}:${port}`;
}

/** The envoy-scope route table of a namespace. */
export function outboundRouteName(namespace: string): string {
  return `outbound/${namespace}`;
}

/** The name of a TCP listener on a Service's cluster IP. */
export function tcpListenerName(clusterIP: string, port: number): string {
  return `${clusterIP}_${port}`;
}

const APP_PROTOCOLS: Readonly<Record<string, PortProtocol>> = {
  http: 'http',
  'kubernetes.io/h2c': 'http2',
  grpc: 'http2',
  http2: 'http2',
  h2c: 'http2',
  tcp: 'tcp',
  // TLS and WebSocket-over-TLS are opaque to the proxy: pass the bytes through.
  https: 'tcp',
  tls: 'tcp',
  'kubernetes.io/wss': 'tcp',
  'kubernetes.io/ws': 'http',
  // gRPC-Web travels as HTTP/1.1 (Istio's GRPC-Web is HTTP too).
  'grpc-web': 'http',
  // Istio's other explicit protocols: databases and caches that speak their own wire protocols.
  mongo: 'tcp',
  mysql: 'tcp',
  redis: 'tcp',
};

const NAME_PREFIXES: Readonly<Record<string, PortProtocol>> = {
  http: 'http',
  http2: 'http2',
  grpc: 'http2',
  h2c: 'http2',
  tcp: 'tcp',
  https: 'tcp',
  tls: 'tcp',
  mongo: 'tcp',
  mysql: 'tcp',
  redis: 'tcp',
};

/**
 * Istio's rule: appProtocol when it names a known protocol, else the port name's prefix (`<protocol>[-<suffix>]`),
 * else HTTP (Istio would sniff the first bytes; Skein does not, so a TCP port needs a `tcp`, `tls`, `mongo`, `mysql`
 * or `redis` name or appProtocol). `grpc-web` is plain HTTP/1.1 to the proxy.
 */
export function detectProtocol(port: Pick<V1ServicePort, 'name' | 'appProtocol'>): PortProtocol {
  const app = port.appProtocol?.toLowerCase();
  if (app) {
    const known = APP_PROTOCOLS[app];
    if (known) return known;
  }
  const name = (port.name ?? '').toLowerCase();
  if (name === 'grpc-web' || name.startsWith('grpc-web-')) return 'http';
  const prefix = name.split('-')[0] ?? '';
  return NAME_PREFIXES[prefix] ?? 'http';
}

/** Ports a mesh proxy can carry: TCP (the Kubernetes default); UDP and SCTP ports are left alone. */
export function meshPorts(service: V1Service): V1ServicePort[] {
  return (service.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP').toUpperCase() === 'TCP');
}

/** The port whose vhost also answers without a port: 80 if it is an HTTP port, else the first HTTP port. */
export function defaultHttpPort(httpPorts: readonly number[]): number | undefined {
  return httpPorts.includes(80) ? 80 : httpPorts[0];
}

/** The Service's virtual IP, or undefined for headless (`None`), ExternalName and not-yet-allocated Services. */
export function clusterIPOf(service: V1Service): string | undefined {
  const ip = service.spec?.clusterIP;
  if (!ip || ip === 'None' || service.spec?.type === 'ExternalName') return undefined;
  return ip;
}

/** A dual-stack Service's other virtual IPs (`spec.clusterIPs` after the first, which is `spec.clusterIP`). */
export function secondaryClusterIPs(service: V1Service): string[] {
  const primary = clusterIPOf(service);
  if (primary === undefined) return [];
  return (service.spec?.clusterIPs ?? []).filter((ip) => ip && ip !== 'None' && ip !== primary);
}

/** An IP as it appears in a Host header: IPv6 in brackets. */
export function hostOfIP(ip: string): string {
  return ip.includes(':') ? `[${ip}]` : ip;
}

export interface DomainSet {
  /** Domains every namespace's route table holds for this port. */
  readonly remote: readonly string[];
  /** The extra short-name domains only the Service's own namespace holds. */
  readonly local: readonly string[];
}

/**
 * The Host values a Service port answers to, lower-cased and without duplicates, in a fixed order:
 * with the port first (`fqdn`, `name.ns.svc`, `name.ns`, `clusterIP`), then the same without the port
 * when this is the Service's default port.
 */
export function serviceDomains(args: {
  name: string;
  namespace: string;
  fqdn: string;
  clusterIP?: string | undefined;
  /** A dual-stack Service's other family's virtual IP(s), answered as well. */
  otherClusterIPs?: readonly string[];
  port: number;
  isDefaultPort: boolean;
}): DomainSet {
  const name = args.name.toLowerCase();
  const ns = args.namespace.toLowerCase();
  const hosts = [args.fqdn, `${name}.${ns}.svc`, `${name}.${ns}`];
  if (args.clusterIP) hosts.push(hostOfIP(args.clusterIP.toLowerCase()));
  for (const ip of args.otherClusterIPs ?? []) hosts.push(hostOfIP(ip.toLowerCase()));
  const remote = hosts.map((h) => `${h}:${args.port}`);
  const local = [`${name}:${args.port}`];
  if (args.isDefaultPort) {
    remote.push(...hosts);
    local.push(name);
  }
  return { remote: unique(remote), local: unique(local).filter((d) => !remote.includes(d)) };
}

function unique(list: readonly string[]): string[] {
  return [...new Set(list)];
}


/** The scope of gRPC xDS clients. */
export const PROXYLESS_SCOPE = 'proxyless';
const ENVOY_SCOPE_PREFIX = 'envoy/';

/** The scope of sidecars and Envoys in a namespace. */
export function envoyScope(namespace: string): string {
  return `${ENVOY_SCOPE_PREFIX}${namespace}`;
}

/** The namespace of an envoy scope, or undefined for any other scope. */
export function namespaceOfScope(scope: string): string | undefined {
  return scope.startsWith(ENVOY_SCOPE_PREFIX) ? scope.slice(ENVOY_SCOPE_PREFIX.length) : undefined;
}
