// What Skein serves must load in a real Envoy: every PGV rule of Envoy's full protos, and Envoy's config-load checks.
import { afterAll, describe, expect, it } from 'vitest';
import { type Cluster__Output, EXTENSION_TYPE_URL, pack, PROTOCOL_OPTIONS_KEY, TYPE_URL, unpack } from '../../proto/index.ts';
import { structValue } from '../../control-plane/translate/values.ts';
import { createSnapshotCache, type ControlPlaneCache } from '../../control-plane/cache/index.ts';
import type { Snapshot } from '../../control-plane/cache/snapshot.ts';
import type { Logger } from '../../control-plane/log.ts';
import type { RegistryState } from '../../control-plane/registry/registry.ts';
import { authorizationPolicy, peerAuthentication, pod, registryState, service, slice } from '../control-plane/translate/fixtures.ts';
import { EnvoyProtos } from './envoy-full.ts';
import { checkScope, type ServedResource } from './envoy-semantics.ts';
import { type Finding, PgvWalker } from './pgv.ts';

const protos = new EnvoyProtos([
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
]);

/** A mesh that exercises every case the translator handles. */
function mesh(): RegistryState {
  const services = [
    // ClusterIP, multi-port, named targetPort, every per-Service annotation.
    service('default', 'web', {
      clusterIP: '10.96.0.10',
      ports: [
        { name: 'http', port: 80, targetPort: 'http-web' },
        { name: 'grpc', port: 9090, appProtocol: 'grpc' },
        { name: 'tcp-db', port: 5432, targetPort: 'db' },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ],
    }, {
      'skein.dev/lb-policy': 'ring-hash',
      'skein.dev/hash-header': 'X-User',
      'skein.dev/connect-timeout': '250ms',
      'skein.dev/timeout': '15s',
      'skein.dev/mtls-mode': 'PERMISSIVE',
      'skein.dev/allow': 'default/client, shop/*, cluster.local/ns/ops/sa/admin',
    }),
    // Routes with prefixes, a single target, and weighted splits (weights that do not sum to 100).
    service('default', 'api', { clusterIP: '10.96.0.11', ports: [{ name: 'http', port: 8080 }] }, {
      'skein.dev/lb-policy': 'least-request',
      'skein.dev/routes': JSON.stringify([
        { prefix: '/v2', cluster: 'api-v2:8080' },
        { prefix: '/split', weighted: [{ service: 'api', port: 8080, weight: 1 }, { service: 'api-v2', port: 8080, weight: 2 }] },
        { prefix: '/', weighted: [{ service: 'api', port: 8080, weight: 90 }, { service: 'api-v2', port: 8080, weight: 10 }] },
      ]),
    }),
    service('default', 'api-v2', { clusterIP: '10.96.0.12', ports: [{ name: 'http', port: 8080 }] }, { 'skein.dev/lb-policy': 'random' }),
    // A route into a ring-hash Service of another namespace: the route must hash on that Service's header.
    service('default', 'front', { clusterIP: '10.96.0.13', ports: [{ name: 'http', port: 80 }] }, {
      'skein.dev/lb-policy': 'round-robin',
      'skein.dev/routes': '- prefix: /cart\n  cluster: cart.shop:80\n',
    }),
    // Headless, with an HTTP and a TCP port.
    service('default', 'db', { clusterIP: 'None', ports: [{ name: 'tcp', port: 5432 }, { name: 'http-metrics', port: 9187 }] }),
    // ExternalName, HTTP and TLS ports.
    service('default', 'ext', { type: 'ExternalName', externalName: 'api.example.com.', ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }] }),
    // Selector-less: no EndpointSlices at all.
    service('default', 'manual', { clusterIP: '10.96.0.14', ports: [{ port: 7000 }] }),
    // Another namespace, IPv6 VIP, policies from PeerAuthentication and AuthorizationPolicy.
    service('shop', 'cart', { clusterIP: 'fd00::10', ports: [{ name: 'http', port: 80 }, { name: 'h2c', port: 81, appProtocol: 'kubernetes.io/h2c' }] }, {
      'skein.dev/lb-policy': 'ring-hash',
      'skein.dev/hash-header': 'x-session',
    }),
    service('shop', 'web', { clusterIP: '10.96.1.10', ports: [{ name: 'http', port: 80 }] }),
    // sessionAffinity: ClientIP: a ring hash on the caller's address (an HTTP and a TCP port).
    service('shop', 'sticky', { clusterIP: '10.96.1.11', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }, { name: 'tcp', port: 6379 }] }),
  ];
  const slices = [
    slice('default', 'web', 'web-a', [{ name: 'http', port: 8080 }, { name: 'grpc', port: 9090 }, { name: 'tcp-db', port: 15432 }], [
      { ip: '10.1.0.10', pod: 'web-0', zone: 'zone-a' },
      { ip: '10.1.0.9', pod: 'web-1', zone: 'zone-b', ready: false, serving: true, terminating: true },
    ]),
    slice('default', 'web', 'web-b', [{ name: 'http', port: 8081 }, { name: 'grpc', port: 9090 }, { name: 'tcp-db', port: 15433 }], [
      { ip: '10.1.0.11', pod: 'web-2', ready: false },
    ]),
    slice('default', 'api', 'api-a', [{ name: 'http', port: 8080 }], [{ ip: '10.1.1.1', pod: 'api-0' }]),
    slice('default', 'api-v2', 'api-v2-a', [{ name: 'http', port: 8080 }], [{ ip: '10.1.1.2', pod: 'api-v2-0' }]),
    slice('default', 'db', 'db-a', [{ name: 'tcp', port: 5432 }, { name: 'http-metrics', port: 9187 }], [{ ip: '10.1.2.1', pod: 'db-0' }, { ip: '10.1.2.2', pod: 'db-1' }]),
    slice('default', 'web', 'web-fqdn', [{ name: 'http', port: 80 }], [{ ip: 'web.example.com' }], 'FQDN'),
    slice('shop', 'cart', 'cart-a', [{ name: 'http', port: 8080 }, { name: 'h2c', port: 8081 }], [{ ip: 'fd00:1::5', pod: 'cart-0' }]),
    slice('shop', 'web', 'shop-web-a', [{ name: 'http', port: 8080 }], [{ ip: '10.2.0.1', pod: 'shop-web-0' }]),
  ];
  const pods = [
    pod('default', 'web-0', 'web', { 'skein.dev/inbound-port': '15006' }),
    pod('default', 'web-1', 'web'),
    pod('default', 'web-2', undefined, { 'skein.dev/inbound-port': 'not-a-port' }),
    pod('default', 'api-0', 'api', { 'skein.dev/inbound-port': '15006' }),
    pod('default', 'api-v2-0', 'api'),
    pod('default', 'db-0', 'db'),
    pod('shop', 'cart-0', 'cart', { 'skein.dev/inbound-port': '15006' }),
  ];
  const policies = [
    peerAuthentication('skein-system', 'mesh', 'STRICT'),
    peerAuthentication('shop', 'ns-wide', 'PERMISSIVE'),
    peerAuthentication('shop', 'cart-strict', 'STRICT', ['cart']),
    authorizationPolicy('default', 'api-allow', {
      targetRefs: [{ kind: 'Service', name: 'api' }],
      rules: [{ from: [{ source: { principals: ['default/web', 'cluster.local/ns/shop/sa/cart'] } }], to: [{ operation: { methods: ['GET'], paths: ['/v2*'] } }] }],
    }),
    authorizationPolicy('shop', 'deny-ops', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['ops'] } }] }] }),
  ];
  return registryState(services, slices, pods, policies);
}

const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {}, debugEnabled: false };
let cache: ControlPlaneCache | undefined;
afterAll(() => cache?.close());

function snapshotOf(state: RegistryState): { snapshot: Snapshot; cache: ControlPlaneCache } {
  const c = createSnapshotCache({ state: () => state, subscribe: () => () => {} }, { log: quiet });
  // A namespace without Services of its own still gets a scope (its proxies see every other namespace).
  c.scopeOf({ id: 'sidecar~10.9.0.1~app-0.lonely~lonely.svc.cluster.local', user_agent_name: 'envoy' } as never);
  return { snapshot: c.current(), cache: c };
}

function served(snapshot: Snapshot, scope: string): ServedResource[] {
  const out: ServedResource[] = [];
  for (const [typeUrl, byName] of snapshot.scopes.get(scope) ?? []) {
    for (const r of byName.values()) {
      expect(r.any.type_url, `${r.name} Any type`).toBe(typeUrl);
      out.push({ typeUrl, name: r.name, bytes: r.any.value });
    }
  }
  return out;
}

/** Every finding for a scope: PGV rules on each resource (and inside every Any), then Envoy's load-time rules. */
function validate(resources: readonly ServedResource[]): Finding[] {
  const walker = new PgvWalker(protos);
  for (const r of resources) walker.validateBytes(r.typeUrl, r.bytes, `${r.typeUrl.split('.').pop()} ${r.name}`);
  return [...walker.findings, ...checkScope(protos, resources)];
}

const format = (findings: readonly Finding[]) => findings.map((f) => `${f.path}: [${f.rule}] ${f.message}`).join('\n');

describe('the resources Skein serves load in a real Envoy', () => {
  const built = snapshotOf(mesh());
  cache = built.cache;
  const { snapshot } = built;
  const scopes = [...snapshot.scopes.keys()].sort();

  it('covers both kinds of scope and every resource type', () => {
    expect(scopes).toEqual(['envoy/default', 'envoy/lonely', 'envoy/shop', 'proxyless']);
    for (const scope of scopes) {
      const kinds = new Set(served(snapshot, scope).map((r) => r.typeUrl));
      // VirtualHost resources are in a scope's VHDS form only (for clients that ask for VHDS).
      expect([...kinds].sort(), scope).toEqual(Object.values(TYPE_URL).filter((t) => t !== TYPE_URL.virtualHost).sort());
    }
  });

  for (const scope of ['envoy/default', 'envoy/lonely', 'envoy/shop']) {
    it(`${scope} as VHDS clients get it: its route table and VirtualHost resources pass every PGV rule`, () => {
      const form = snapshot.vhdsScopes?.get(scope);
      expect(form, scope).toBeDefined();
      const resources: ServedResource[] = [];
      for (const typeUrl of [TYPE_URL.route, TYPE_URL.virtualHost]) {
        for (const r of form?.get(typeUrl)?.values() ?? []) resources.push({ typeUrl, name: r.name, bytes: r.any.value });
      }
      expect(resources.filter((r) => r.typeUrl === TYPE_URL.virtualHost).length, scope).toBeGreaterThan(0);
      const walker = new PgvWalker(protos);
      for (const r of resources) walker.validateBytes(r.typeUrl, r.bytes, `${r.typeUrl.split('.').pop()} ${r.name}`);
      expect(format(walker.findings)).toBe('');
    });
  }

  for (const scope of ['envoy/default', 'envoy/lonely', 'envoy/shop', 'proxyless']) {
    it(`${scope}: passes every PGV rule and Envoy's load-time checks`, () => {
      const findings = validate(served(snapshot, scope));
      expect(format(findings)).toBe('');
    });
  }

  it('reports the translation problems of the fixtures (and only those)', () => {
    const problems = [...built.cache.translationProblems().values()].flat().map((p) => p.code);
    // The fixtures' TCP ports with no virtual IP (headless, or no clusterIP) get no listener, and say so.
    expect(problems).toEqual(['SKEIN_TRANSLATE_ANNOTATION', 'SKEIN_TRANSLATE_TCP_NO_CLUSTER_IP', 'SKEIN_TRANSLATE_TCP_NO_CLUSTER_IP']);
  });
});

describe('upstream protocol as Envoy reads it (typed_extension_protocol_options)', () => {
  const { snapshot } = snapshotOf(mesh());
  const KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
  const clusterType = protos.typeOf(TYPE_URL.cluster);

  /** Each cluster of a scope: Skein's metadata protocol, and the protocol options decoded with Envoy's full protos. */
  function clusters(scope: string): { name: string; protocol: unknown; options: M }[] {
    // Loaded first, so the decoded Anys come out expanded ("@type" and the payload's fields).
    expect(protos.typeOf(EXTENSION_TYPE_URL.httpProtocolOptions)).toBeDefined();
    return served(snapshot, scope)
      .filter((r) => r.typeUrl === TYPE_URL.cluster)
      .map((r) => {
        const ours = unpack<Cluster__Output>({ type_url: r.typeUrl, value: r.bytes });
        const envoys = protos.decodeJson(clusterType as NonNullable<typeof clusterType>, r.bytes);
        return { name: r.name, protocol: structValue(ours.metadata?.filter_metadata.skein, 'protocol'), options: envoys.typed_extension_protocol_options as M };
      });
  }

  it('an http2 cluster tells Envoy to speak HTTP/2 upstream; http and tcp clusters leave HTTP/1.1 (the default) alone', () => {
    let http2 = 0;
    let other = 0;
    for (const scope of ['envoy/default', 'envoy/lonely', 'envoy/shop']) {
      for (const c of clusters(scope)) {
        if (c.protocol === 'http2') {
          http2++;
          expect(Object.keys(c.options), c.name).toEqual([KEY]);
          const opts = c.options[KEY] as M;
          expect(opts['@type'], c.name).toBe(EXTENSION_TYPE_URL.httpProtocolOptions);
          expect(opts.upstream_protocol_options, c.name).toBe('explicit_http_config');
          expect(opts.explicit_http_config.protocol_config, c.name).toBe('http2_protocol_options');
        } else {
          other++;
          expect(c.options, `${c.name} (${String(c.protocol)})`).toEqual({});
        }
      }
    }
    // The fixtures hold gRPC (appProtocol) and h2c ports, and HTTP and TCP ones, each seen from three namespaces.
    expect(http2).toBe(6);
    expect(other).toBeGreaterThan(20);
  });

  it('proxyless clusters carry no protocol options (gRPC clients always speak HTTP/2)', () => {
    const all = clusters('proxyless');
    expect(all.some((c) => c.protocol === 'http2')).toBe(true);
    for (const c of all) expect(c.options, c.name).toEqual({});
  });
});

/** Mutates one resource of a scope (decoded with our protos, re-encoded) and returns the findings. */
function mutated(scope: string, typeUrl: string, name: string, change: (m: Record<string, unknown>) => void): string {
  const resources = served(snapshotOf(mesh()).snapshot, scope).map((r) => {
    if (r.typeUrl !== typeUrl || r.name !== name) return r;
    const message = unpack({ type_url: r.typeUrl, value: r.bytes });
    change(message);
    return { ...r, bytes: pack(typeUrl, message).value };
  });
  return format(validate(resources));
}

type M = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const WEB80 = 'outbound|80||web.default.svc.cluster.local';

describe('the checks catch what Envoy would reject', () => {
  it('a cluster with no name, a zero connect timeout or an undefined lb policy (PGV)', () => {
    expect(mutated('envoy/default', TYPE_URL.cluster, WEB80, (c: M) => (c.name = ''))).toMatch(/Cluster .*name: \[string.min_len\]/);
    expect(mutated('envoy/default', TYPE_URL.cluster, WEB80, (c: M) => (c.connect_timeout = { seconds: 0, nanos: 0 }))).toMatch(/connect_timeout: \[duration.range\]/);
    expect(mutated('envoy/default', TYPE_URL.cluster, WEB80, (c: M) => (c.lb_policy = 42))).toMatch(/lb_policy: \[enum.defined_only\]/);
  });

  it('protocol options under an unknown key, of the wrong type, or without a protocol', () => {
    const grpc = 'outbound|9090||web.default.svc.cluster.local';
    const key = PROTOCOL_OPTIONS_KEY.http;
    expect(mutated('envoy/default', TYPE_URL.cluster, grpc, (c: M) => {
      c.typed_extension_protocol_options['envoy.upstreams.http.http_protocol_options'] = c.typed_extension_protocol_options[key];
    })).toMatch(/typed_extension_protocol_options\[envoy.upstreams.http.http_protocol_options\]: \[protocol_options\] no network filter/);
    expect(mutated('envoy/default', TYPE_URL.cluster, grpc, (c: M) => {
      c.typed_extension_protocol_options[key] = pack(EXTENSION_TYPE_URL.router, {});
    })).toMatch(/\[protocol_options\] envoy.extensions.upstreams.http.v3.HttpProtocolOptions takes .*HttpProtocolOptions, not .*Router/);
    expect(mutated('envoy/default', TYPE_URL.cluster, grpc, (c: M) => {
      c.typed_extension_protocol_options[key] = pack(EXTENSION_TYPE_URL.httpProtocolOptions, { explicit_http_config: {} });
    })).toMatch(/explicit_http_config: \[oneof.required\] one of http_protocol_options, http2_protocol_options, http3_protocol_options/);
    expect(mutated('envoy/default', TYPE_URL.cluster, grpc, (c: M) => {
      c.typed_extension_protocol_options[key] = pack(EXTENSION_TYPE_URL.httpProtocolOptions, {});
    })).toMatch(/\[oneof.required\] one of explicit_http_config, use_downstream_protocol_config, auto_config/);
  });

  it('a port above 65535 and a hostname in EDS', () => {
    const out = mutated('envoy/default', TYPE_URL.endpoint, WEB80, (cla: M) => {
      cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = 70000;
      cla.endpoints[1].lb_endpoints[0].endpoint.address.socket_address.address = 'web-1.example.com';
    });
    expect(out).toMatch(/port_value: \[uint32.range\]/);
    expect(out).toMatch(/\[ip\] "web-1.example.com" is not an IP/);
  });

  it('a duplicate domain, a vhost without domains, and a route to a missing cluster', () => {
    const out = mutated('envoy/default', TYPE_URL.route, 'outbound/default', (rc: M) => {
      rc.virtual_hosts[1].domains.push(rc.virtual_hosts[0].domains[0]);
      rc.virtual_hosts[2].domains = [];
      rc.virtual_hosts[3].routes[0].route.cluster = 'outbound|1||nowhere';
    });
    expect(out).toMatch(/\[unique_domain\]/);
    expect(out).toMatch(/domains: \[repeated.min_items\]/);
    expect(out).toMatch(/\[cluster_exists\] no cluster outbound\|1\|\|nowhere/);
  });

  it('weights that older Envoys reject, and a ring-hash route without hash policy', () => {
    const out = mutated('envoy/default', TYPE_URL.route, 'outbound/default', (rc: M) => {
      for (const vh of rc.virtual_hosts) {
        for (const r of vh.routes) {
          if (r.route?.weighted_clusters) r.route.weighted_clusters.clusters[0].weight = { value: 3 };
          r.route.hash_policy = [];
        }
      }
    });
    expect(out).toMatch(/\[total_weight\] the weights sum to/);
    expect(out).toMatch(/\[hash_policy\] cluster outbound\|80\|\|web.default.svc.cluster.local is RING_HASH/);
  });

  it('an HCM without stat_prefix or router, over a non-ADS config source, and an unknown Any type', () => {
    const out = mutated('envoy/default', TYPE_URL.listener, 'virtualOutbound', (l: M) => {
      const filter = l.filter_chains[0].filters[0];
      const hcm = unpack(filter.typed_config) as M;
      hcm.stat_prefix = '';
      hcm.http_filters = [];
      hcm.rds.config_source = { path: '/etc/routes.yaml' };
      filter.typed_config = pack(EXTENSION_TYPE_URL.httpConnectionManager, hcm);
      l.filter_chains.push({ filters: [{ name: 'x', typed_config: { type_url: 'type.googleapis.com/skein.Nope', value: Buffer.alloc(0) } }] });
    });
    expect(out).toMatch(/stat_prefix: \[string.min_len\]/);
    expect(out).toMatch(/\[router_last\]/);
    expect(out).toMatch(/\[rds_ads\]/);
    expect(out).toMatch(/\[any.type_url\] type.googleapis.com\/skein.Nope names no message/);
    expect(out).toMatch(/\[filter_chain_match\]/);
  });

  it('two listeners on one address, and unreachable unbound listeners', () => {
    const out = mutated('envoy/default', TYPE_URL.listener, 'virtualOutbound', (l: M) => {
      l.address.socket_address = { address: '10.96.0.10', port_value: 5432 };
      l.use_original_dst = { value: false };
    });
    expect(out).toMatch(/\[unique_address\] 10.96.0.10:5432/);
    expect(out).toMatch(/\[use_original_dst\]/);
  });

  it('a proxyless api_listener whose route table is not served', () => {
    const name = 'web.default.svc.cluster.local:80';
    const out = mutated('proxyless', TYPE_URL.listener, name, (l: M) => {
      const hcm = unpack(l.api_listener.api_listener) as M;
      hcm.rds.route_config_name = 'missing';
      l.api_listener.api_listener = pack(EXTENSION_TYPE_URL.httpConnectionManager, hcm);
    });
    expect(out).toMatch(/\[rds_present\] no RouteConfiguration missing/);
  });
});
