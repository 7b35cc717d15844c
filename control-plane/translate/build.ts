// Translation entry points: everything one Service contributes, and assembling per-Service results into scopes.
import type { V1EndpointSlice, V1Service, V1ServicePort } from '@kubernetes/client-node';
import type { Cluster, ClusterLoadAssignment, Listener, Route, RouteConfiguration, VirtualHost } from '../../proto/index.ts';
import type { RegistryState, ServiceKey } from '../registry/registry.ts';
import { serviceKey } from '../registry/registry.ts';
import type { AnnotationError, LbPolicyAnnotation, ServiceSettings } from './annotations.ts';
import { ANNOTATION, parseServiceAnnotations } from './annotations.ts';
import { buildCluster, DEFAULT_CONNECT_TIMEOUT_MS, envoyLbPolicy, proxylessLbPolicy } from './cluster.ts';
import { buildLoadAssignment } from './endpoints.ts';
import { buildProxylessListener, buildTcpListener } from './listener.ts';
import {
  clusterIPOf,
  clusterName,
  DEFAULT_CLUSTER_DOMAIN,
  defaultHttpPort,
  detectProtocol,
  hostPort,
  meshPorts,
  secondaryClusterIPs,
  serviceDomains,
  serviceFqdn,
  tcpListenerName,
} from './names.ts';
import type { HashKey, RouteSpec } from './route.ts';
import { buildRouteConfiguration, buildRoutes, buildVirtualHost } from './route.ts';
import { DEFAULT_TRUST_DOMAIN, policyIndex, serviceSecurity, type ServiceSecurity } from './security.ts';

const NO_POLICIES: RegistryState['policies'] = new Map();

export interface TranslateOptions {
  /** Default `cluster.local`. */
  readonly clusterDomain?: string;
  /** Default 1000 ms; the `skein.dev/connect-timeout` annotation overrides it per Service. */
  readonly connectTimeoutMs?: number;
  /** The mesh's SPIFFE trust domain, for endpoint identities and `<ns>/<sa>` principals; default `cluster.local`. */
  readonly trustDomain?: string;
  /**
   * Kubernetes mode: an endpoint whose targetRef names a Pod the registry does not hold (yet) is published as not
   * ready. Without its Pod, callers cannot know it has a sidecar and would send plaintext straight to the app;
   * the Pod usually follows within moments (the EndpointSlice can arrive first), or was force-deleted.
   */
  readonly holdEndpointsWithoutPod?: boolean;
  /**
   * The settings a Service's previous translation served (the snapshot builder supplies it): an annotation an edit
   * broke keeps its value from there (see parseServiceAnnotations), and an ExternalName alias routes as its target does.
   */
  readonly lastGoodOf?: (key: ServiceKey) => ServiceSettings | undefined;
}

/** Something wrong with one Service's inputs; the rest of its resources (and every other Service's) still publish. */
export interface TranslationProblem {
  readonly service: ServiceKey;
  readonly code: string;
  readonly message: string;
}

/** A Service port's virtual host as other namespaces see it, and as the Service's own namespace sees it. */
export interface ServiceVirtualHost {
  readonly name: string;
  readonly remote: VirtualHost;
  /** The same vhost with the short-name domains (`<name>:<port>`, `<name>`) added. */
  readonly local: VirtualHost;
}

/** Everything one Service contributes to the snapshot (plain messages with Envoy's field names). */
export interface ServiceResources {
  readonly key: ServiceKey;
  readonly namespace: string;
  /** Whether the Service exists in the registry state (a removed Service contributes nothing). */
  readonly exists: boolean;
  readonly clusters: { readonly envoy: readonly Cluster[]; readonly proxyless: readonly Cluster[] };
  readonly endpoints: readonly ClusterLoadAssignment[];
  /** Envoy scope: TCP listeners on the cluster IP. */
  readonly tcpListeners: readonly Listener[];
  /** Envoy scope: one vhost per HTTP port, for the `outbound/<ns>` route tables. */
  readonly virtualHosts: readonly ServiceVirtualHost[];
  readonly proxyless: { readonly listeners: readonly Listener[]; readonly routes: readonly RouteConfiguration[] };
  /** Other Services whose existence or ports this one's routes depend on (retranslate this one when they change). */
  readonly dependsOn: readonly ServiceKey[];
  readonly problems: readonly TranslationProblem[];
  /** The annotation settings in force (a bad annotation keeps its value from here in the next translation). */
  readonly settings?: ServiceSettings;
}

function emptyResources(key: ServiceKey, problems: TranslationProblem[] = []): ServiceResources {
  const slash = key.indexOf('/');
  return {
    key,
    namespace: key.slice(0, slash),
    exists: false,
    clusters: { envoy: [], proxyless: [] },
    endpoints: [],
    tcpListeners: [],
    virtualHosts: [],
    proxyless: { listeners: [], routes: [] },
    dependsOn: [],
    problems,
  };
}

/** Translates one Service of the registry state; pure: equal inputs give equal (deep-equal) outputs. */
export function translateService(key: ServiceKey, state: RegistryState, options: TranslateOptions = {}): ServiceResources {
  const service = state.services.get(key);
  if (!service) return emptyResources(key);
  const domain = options.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN;
  const slash = key.indexOf('/');
  const namespace = service.metadata?.namespace ?? key.slice(0, slash);
  const name = service.metadata?.name ?? key.slice(slash + 1);
  const problems: TranslationProblem[] = [];
  const report = (code: string, message: string) => {
    if (!problems.some((p) => p.message === message)) problems.push({ service: key, code, message });
  };
  const reportErrors = (errors: readonly AnnotationError[]) => {
    for (const e of errors) report(e.code, e.message);
  };

  const { settings, errors } = parseServiceAnnotations(service.metadata, `Service ${key}`, options.lastGoodOf?.(key));
  reportErrors(errors);
  const balance = balancing(service, settings);
  if (balance.lbPolicy === 'ring-hash' && !balance.hash) {
    report(
      'SKEIN_TRANSLATE_ANNOTATION',
      `Service ${key} metadata.annotations["${ANNOTATION.lbPolicy}"]: ring-hash without "${ANNOTATION.hashHeader}" hashes nothing, so every request goes to a random endpoint; name the header to hash on`,
    );
  }
  if (clientIpAffinity(service) && balance.hash && 'header' in balance.hash) {
    report(
      'SKEIN_TRANSLATE_AFFINITY',
      `Service ${key} spec.sessionAffinity: ClientIP is not kept: metadata.annotations["${ANNOTATION.hashHeader}"] hashes on "${balance.hash.header}" instead`,
    );
  } else if (clientIpAffinity(service) && balance.lbPolicy !== 'ring-hash') {
    report(
      'SKEIN_TRANSLATE_AFFINITY',
      `Service ${key} spec.sessionAffinity: ClientIP is not kept: metadata.annotations["${ANNOTATION.lbPolicy}"] is "${balance.lbPolicy}"; remove it (ClientIP means ring-hash on the caller's address)`,
    );
  }

  const isExternal = service.spec?.type === 'ExternalName';
  const externalName = service.spec?.externalName?.trim().replace(/\.$/, '');
  if (isExternal && !externalName) {
    report('SKEIN_TRANSLATE_EXTERNAL_NAME', `Service ${key} spec.externalName: missing for type ExternalName; set it to a DNS name (no resources published)`);
    return { ...emptyResources(key, problems), exists: true, settings };
  }

  // An ExternalName naming a Service of the mesh (`<svc>.<ns>.svc.<cluster domain>`) is an alias of it, as Istio
  // treats it since 1.21: its names route to that Service's clusters (with their mTLS and policies), not to a DNS
  // cluster that would reach the ClusterIP in plaintext past the target's sidecar.
  const named = isExternal ? meshServiceNamed(externalName as string, domain) : undefined;
  const aliasOf = aliasTargetOf(service, key, domain, state);
  if (aliasOf !== undefined) {
    for (const a of ROUTING_ANNOTATIONS) {
      if (service.metadata?.annotations?.[a] !== undefined) {
        report('SKEIN_TRANSLATE_EXTERNAL_NAME', `Service ${key} metadata.annotations["${a}"]: ignored: this ExternalName is an alias of ${aliasOf}, whose own routing applies; set it there`);
      }
    }
    return { ...translateAlias(key, service, aliasOf, state, domain, options, report), problems, settings };
  }

  const fqdn = serviceFqdn(name, namespace, domain);
  const clusterIP = clusterIPOf(service);
  const ports = meshPorts(service);
  const httpPorts = ports.filter((p) => detectProtocol(p) !== 'tcp').map((p) => p.port);
  const defaultPort = defaultHttpPort(httpPorts);
  const { routes: extraRoutes, dependsOn } = resolveRoutes(key, settings, state, domain, report);
  const timeoutMs = settings.timeoutMs ?? 0;
  const connectTimeoutMs = settings.connectTimeoutMs ?? options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const slices = state.slices.get(key) ?? [];
  const publishNotReady = service.spec?.publishNotReadyAddresses === true;
  const family = primaryFamily(service, slices);
  const headless = !isExternal && service.spec?.clusterIP === 'None';
  // ExternalName Services have no mesh pods: no identities, inbound mode or authorization to carry.
  let security: ServiceSecurity | undefined;
  if (!isExternal) {
    const index = policyIndex(state.policies ?? NO_POLICIES, options.trustDomain ?? DEFAULT_TRUST_DOMAIN);
    const result = serviceSecurity({ namespace, name, settings, slices, pods: state.pods, index });
    security = result.security;
    for (const p of result.problems) report(p.code, p.message);
  }

  const envoyClusters: Cluster[] = [];
  const proxylessClusters: Cluster[] = [];
  const endpoints: ClusterLoadAssignment[] = [];
  const tcpListeners: Listener[] = [];
  const virtualHosts: ServiceVirtualHost[] = [];
  const listeners: Listener[] = [];
  const routeTables: RouteConfiguration[] = [];

  for (const port of ports) {
    const cluster = clusterName(port.port, fqdn);
    const protocol = detectProtocol(port);
    const base = {
      name: cluster,
      service: key,
      port: port.port,
      protocol,
      connectTimeoutMs,
      externalName: isExternal ? externalName : undefined,
    };
    // A TCP port hashes on the caller's address in its tcp_proxy (no route, no header to hash there).
    const tcpAffinity = protocol === 'tcp' && clientIpAffinity(service) && (!settings.lbPolicy || settings.lbPolicy === 'ring-hash');
    const portPolicy = protocol === 'tcp' ? (tcpAffinity ? 'ring-hash' : settings.lbPolicy) : balance.lbPolicy;
    const envoyPolicy = envoyLbPolicy(portPolicy);
    const proxylessPolicy = proxylessLbPolicy(portPolicy);
    // Proxyless clients get no security metadata or protocol options, so their cluster is its own object unless the
    // envoy one has neither.
    const shared = proxylessPolicy === envoyPolicy && !security && protocol !== 'http2';
    /** Publishes a cluster of this port for both kinds of client, and its endpoints from `from` (not for ExternalName). */
    const addCluster = (name: string, from: readonly V1EndpointSlice[]): void => {
      const envoyCluster = buildCluster({ ...base, name, lbPolicy: envoyPolicy, security, protocolOptions: true });
      envoyClusters.push(envoyCluster);
      proxylessClusters.push(shared ? envoyCluster : buildCluster({ ...base, name, lbPolicy: proxylessPolicy }));
      if (isExternal) return;
      const eds = buildLoadAssignment({
        clusterName: name,
        servicePort: port,
        slices: from,
        pods: state.pods,
        publishNotReadyAddresses: publishNotReady,
        addressFamily: family,
        holdEndpointsWithoutPod: options.holdEndpointsWithoutPod === true,
      });
      endpoints.push(eds.cla);
      reportErrors(eds.errors);
    };
    addCluster(cluster, slices);

    const routes = buildRoutes(cluster, extraRoutes, timeoutMs, balance.hash);
    const vhName = hostPort(fqdn, port.port);
    if (protocol === 'tcp') {
      if (clusterIP) tcpListeners.push(buildTcpListener(tcpListenerName(clusterIP, port.port), clusterIP, port.port, cluster, tcpAffinity));
      else {
        // Without a virtual IP (a registry file that left spec.clusterIP out, or a headless Service) there is no
        // address to listen for: say so rather than leave callers with "connection refused" and nothing in any log.
        report(
          'SKEIN_TRANSLATE_TCP_NO_CLUSTER_IP',
          `Service ${key} spec.ports[${port.name ?? port.port}]: a TCP port needs spec.clusterIP (${headless ? 'headless Services get no TCP listener' : 'set one, e.g. 10.96.0.x, in the registry file'}); sidecars get no listener for port ${port.port}`,
        );
      }
    } else {
      const domains = serviceDomains({ name, namespace, fqdn, clusterIP, otherClusterIPs: secondaryClusterIPs(service), port: port.port, isDefaultPort: port.port === defaultPort });
      virtualHosts.push({
        name: vhName,
        remote: buildVirtualHost(vhName, domains.remote, routes),
        local: buildVirtualHost(vhName, [...domains.remote, ...domains.local], routes),
      });
    }
    listeners.push(buildProxylessListener(vhName));
    routeTables.push(buildRouteConfiguration(vhName, [buildVirtualHost(vhName, [vhName, fqdn], forProxyless(routes))]));

    // A headless Service's Pods are also addressed one by one (a StatefulSet's web-0.web.shop.svc.cluster.local, as
    // Kubernetes DNS answers them): each named endpoint gets a cluster and a virtual host of its own.
    if (headless && protocol !== 'tcp') {
      const hosts = podHostnames(slices, family);
      if (hosts.length > MAX_POD_NAMES) {
        report('SKEIN_TRANSLATE_POD_NAMES', `Service ${key}: ${hosts.length} named endpoints; only the first ${MAX_POD_NAMES} are addressable by Pod name`);
      }
      for (const host of hosts.slice(0, MAX_POD_NAMES)) {
        const podFqdn = `${host}.${fqdn}`;
        const podCluster = clusterName(port.port, podFqdn);
        addCluster(podCluster, slices.map((sl) => ({ ...sl, endpoints: (sl.endpoints ?? []).filter((e) => e.hostname === host) })));
        const podRoutes = buildRoutes(podCluster, [], timeoutMs, balance.hash);
        const podVh = hostPort(podFqdn, port.port);
        const d = serviceDomains({ name: `${host}.${name}`, namespace, fqdn: podFqdn, port: port.port, isDefaultPort: port.port === defaultPort });
        virtualHosts.push({
          name: podVh,
          remote: buildVirtualHost(podVh, d.remote, podRoutes),
          local: buildVirtualHost(podVh, [...d.remote, ...d.local], podRoutes),
        });
      }
    }
  }

  return {
    key,
    namespace,
    exists: true,
    clusters: { envoy: envoyClusters, proxyless: proxylessClusters },
    endpoints,
    tcpListeners,
    virtualHosts,
    proxyless: { listeners, routes: routeTables },
    // An ExternalName naming a Service that does not exist yet becomes its alias when it appears.
    dependsOn: named !== undefined && named !== key ? [...dependsOn, named] : dependsOn,
    problems,
    settings,
  };
}

/** Annotations that shape a Service's routing: on an alias they would be ignored (its target's apply). */
const ROUTING_ANNOTATIONS = ['skein.dev/routes', 'skein.dev/timeout', 'skein.dev/lb-policy', 'skein.dev/hash-header', 'skein.dev/connect-timeout'] as const;

/** The mesh Service an ExternalName Service is an alias of (see translateService), if it is one. */
function aliasTargetOf(service: V1Service, key: ServiceKey, domain: string, state: RegistryState): ServiceKey | undefined {
  if (service.spec?.type !== 'ExternalName' || !service.spec.externalName) return undefined;
  const named = meshServiceNamed(service.spec.externalName.trim().replace(/\.$/, ''), domain);
  if (named === undefined || named === key) return undefined;
  const target = state.services.get(named);
  return target !== undefined && target.spec?.type !== 'ExternalName' ? named : undefined;
}

/** The key of the Service a DNS name names as `<svc>.<ns>.svc[.<domain>]` (whether it exists or not), if it does. */
function meshServiceNamed(dnsName: string, domain: string): ServiceKey | undefined {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\..+)?$/.exec(dnsName.toLowerCase());
  if (!m || (m[5] !== undefined && m[5] !== `.${domain.toLowerCase()}`)) return undefined;
  return `${m[3]}/${m[1]}` as ServiceKey;
}

/**
 * An ExternalName alias of mesh Service `target`: for each of the target's HTTP ports (only those the alias lists,
 * when it lists any), a virtual host under the alias's own names routing to the target's cluster. Opaque TCP
 * ports get nothing: an alias has no virtual IP for a listener.
 */
function translateAlias(
  key: ServiceKey,
  service: V1Service,
  target: ServiceKey,
  state: RegistryState,
  domain: string,
  options: TranslateOptions,
  report: (code: string, message: string) => void,
): Omit<ServiceResources, 'problems' | 'settings'> {
  const slash = key.indexOf('/');
  const namespace = key.slice(0, slash);
  const name = key.slice(slash + 1);
  const fqdn = serviceFqdn(name, namespace, domain);
  const targetService = state.services.get(target) as V1Service;
  const targetFqdn = serviceFqdn(target.slice(target.indexOf('/') + 1), target.slice(0, target.indexOf('/')), domain);
  const listed = new Set((service.spec?.ports ?? []).map((p) => p.port));
  const ports = meshPorts(targetService).filter((p) => detectProtocol(p) !== 'tcp' && (listed.size === 0 || listed.has(p.port)));
  const missing = [...listed].filter((p) => !ports.some((t) => t.port === p));
  if (missing.length > 0) {
    report('SKEIN_TRANSLATE_EXTERNAL_NAME', `Service ${key} spec.ports: ${missing.join(', ')} not HTTP ports of ${target}, which spec.externalName names; those ports are not served`);
  }
  const defaultPort = defaultHttpPort(ports.map((p) => p.port));
  const virtualHosts: ServiceVirtualHost[] = [];
  const listeners: Listener[] = [];
  const routeTables: RouteConfiguration[] = [];
  // The target's own routing: its skein.dev/routes split, its timeout, its hashing, as the target itself serves them
  // (its last valid values for annotations now broken; its problems are its own report's).
  const targetSettings = parseServiceAnnotations(targetService.metadata, `Service ${target}`, options.lastGoodOf?.(target)).settings;
  const targetRoutes = resolveRoutes(target, targetSettings, state, domain, () => {});
  const hash = balancing(targetService, targetSettings).hash;
  for (const port of ports) {
    const routes = buildRoutes(clusterName(port.port, targetFqdn), targetRoutes.routes, targetSettings.timeoutMs ?? 0, hash);
    const vhName = hostPort(fqdn, port.port);
    const domains = serviceDomains({ name, namespace, fqdn, port: port.port, isDefaultPort: port.port === defaultPort });
    virtualHosts.push({ name: vhName, remote: buildVirtualHost(vhName, domains.remote, routes), local: buildVirtualHost(vhName, [...domains.remote, ...domains.local], routes) });
    listeners.push(buildProxylessListener(vhName));
    routeTables.push(buildRouteConfiguration(vhName, [buildVirtualHost(vhName, [vhName, fqdn], forProxyless(routes))]));
  }
  return {
    key,
    namespace,
    exists: true,
    clusters: { envoy: [], proxyless: [] },
    endpoints: [],
    tcpListeners: [],
    virtualHosts,
    proxyless: { listeners, routes: routeTables },
    dependsOn: [target, ...targetRoutes.dependsOn],
  };
}

/** Checks `skein.dev/routes` targets against the registry; any unknown target drops all of them (default route kept). */
function resolveRoutes(
  key: ServiceKey,
  settings: ServiceSettings,
  state: RegistryState,
  domain: string,
  report: (code: string, message: string) => void,
): { routes: RouteSpec[]; dependsOn: ServiceKey[] } {
  if (!settings.routes) return { routes: [], dependsOn: [] };
  const dependsOn = new Set<ServiceKey>();
  const routes: RouteSpec[] = [];
  let failed = false;
  for (const [i, entry] of settings.routes.entries()) {
    const targets = [];
    for (const t of entry.targets) {
      const namedKey = serviceKey(t.namespace, t.service);
      if (namedKey !== key) dependsOn.add(namedKey);
      // A route to an ExternalName alias goes to the Service it aliases (the alias has no cluster of its own).
      const named = state.services.get(namedKey);
      const aliasOf = named ? aliasTargetOf(named, namedKey, domain, state) : undefined;
      if (aliasOf !== undefined && aliasOf !== key) dependsOn.add(aliasOf);
      const targetKey = aliasOf ?? namedKey;
      const target = state.services.get(targetKey);
      const port: V1ServicePort | undefined = target ? meshPorts(target).find((p) => p.port === t.port) : undefined;
      if (!target || !port || !hasCluster(target)) {
        failed = true;
        report(
          'SKEIN_TRANSLATE_ROUTE_TARGET',
          `Service ${key} metadata.annotations["skein.dev/routes"][${i}]: ${targetKey}:${t.port} ${target ? `has no TCP port ${t.port}` : 'does not exist'}; fix the target (keeping the default route)`,
        );
        continue;
      }
      // Ring hash needs the hash on the route: the target Service's own balancing says what to hash on.
      const hash = balancing(target, targetKey === key ? settings : parseServiceAnnotations(target.metadata, `Service ${targetKey}`).settings).hash;
      const slash = targetKey.indexOf('/');
      targets.push({ cluster: clusterName(t.port, serviceFqdn(targetKey.slice(slash + 1), targetKey.slice(0, slash), domain)), weight: t.weight, hash });
    }
    routes.push({ prefix: entry.prefix, targets });
  }
  return { routes: failed ? [] : routes, dependsOn: [...dependsOn].sort() };
}

function hasCluster(service: V1Service): boolean {
  return service.spec?.type !== 'ExternalName' || Boolean(service.spec?.externalName);
}

export { type Assembled, assemble } from './assemble.ts';

/**
 * How a Service's endpoints are balanced: `skein.dev/lb-policy` and `skein.dev/hash-header` when set; else
 * `sessionAffinity: ClientIP` (kube-proxy sends a client's connections to one endpoint) is a ring hash on the
 * caller's address, which keeps each client pod on one endpoint while the endpoints stay the same (kube-proxy's
 * `timeoutSeconds` has no equivalent).
 */
function balancing(service: V1Service, settings: ServiceSettings): { readonly lbPolicy?: LbPolicyAnnotation; readonly hash?: HashKey } {
  const clientIp = clientIpAffinity(service);
  const lbPolicy = settings.lbPolicy ?? (clientIp ? 'ring-hash' : undefined);
  const hash: HashKey | undefined = settings.hashHeader
    ? { header: settings.hashHeader }
    : clientIp && lbPolicy === 'ring-hash'
      ? { sourceIp: true }
      : undefined;
  return { ...(lbPolicy ? { lbPolicy } : {}), ...(hash ? { hash } : {}) };
}

/** kube-proxy keeps ClientIP affinity for Services with a virtual IP only: headless and ExternalName ones have none. */
function clientIpAffinity(service: V1Service): boolean {
  const spec = service.spec;
  return spec?.sessionAffinity === 'ClientIP' && spec.type !== 'ExternalName' && spec.clusterIP !== 'None';
}

/** gRPC clients hash a call on their channel (gRFC A42's `io.grpc.channel_id`), the nearest thing they have to a source address. */
const GRPC_CHANNEL_ID = { filter_state: { key: 'io.grpc.channel_id' } };

/**
 * The routes for gRPC clients: gRPC ignores a route's `timeout` and applies `max_stream_duration` instead (gRFC A31),
 * so the Service's timeout is given there too; and a hash on the caller's address becomes one on the channel.
 */
function forProxyless(routes: readonly Route[]): Route[] {
  return routes.map((r) => {
    const route = r.route;
    if (!route) return r;
    const hashing = route.hash_policy?.some((h) => h.connection_properties)
      ? { hash_policy: route.hash_policy.map((h) => (h.connection_properties ? GRPC_CHANNEL_ID : h)) }
      : {};
    const duration = route.timeout ? { max_stream_duration: { max_stream_duration: route.timeout } } : {};
    return { ...r, route: { ...route, ...duration, ...hashing } };
  });
}

/**
 * The address family a Service's endpoints are taken from: its first `ipFamilies` entry (the one its clusterIP has),
 * else its clusterIP's, else IPv4 when it has IPv4 slices. A dual-stack Service has a slice per family for the same
 * Pods, and kube-proxy programs each family apart: merged, every Pod would be an endpoint twice, and an IPv4-only
 * client would be sent to IPv6 addresses.
 */
function primaryFamily(service: V1Service, slices: readonly V1EndpointSlice[]): 'IPv4' | 'IPv6' {
  const first = service.spec?.ipFamilies?.[0];
  if (first === 'IPv4' || first === 'IPv6') return first;
  const ip = service.spec?.clusterIP;
  if (ip && ip !== 'None') return ip.includes(':') ? 'IPv6' : 'IPv4';
  return slices.some((s) => s.addressType === 'IPv4') || !slices.some((s) => s.addressType === 'IPv6') ? 'IPv4' : 'IPv6';
}

/** An endpoint hostname usable in a domain (Kubernetes checks it as a DNS-1123 label; a hand-made slice may not). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** At most this many Pods of one headless Service are addressable by name (each costs a cluster per port). */
const MAX_POD_NAMES = 256;

/** The `hostname`s of a headless Service's endpoints (a StatefulSet's Pod names), in the address family used. */
function podHostnames(slices: readonly V1EndpointSlice[], family: 'IPv4' | 'IPv6'): string[] {
  const names = new Set<string>();
  for (const slice of slices) {
    if (slice.addressType !== family) continue;
    for (const ep of slice.endpoints ?? []) if (ep.hostname && DNS_LABEL.test(ep.hostname)) names.add(ep.hostname);
  }
  return [...names].sort();
}
