// Tests translateService and assemble: clusters per scope, ExternalName, listeners, vhosts and domains, routes annotation.
import { describe, expect, it } from 'vitest';
import type {
  Cluster__Output,
  HttpConnectionManager__Output,
  HttpProtocolOptions__Output,
  Listener__Output,
  RouteConfiguration__Output,
  TcpProxy__Output,
} from '../../../proto/index.ts';
import { EXTENSION_TYPE_URL, pack, PROTOCOL_OPTIONS_KEY, TYPE_URL, unpack } from '../../../proto/index.ts';
import { assemble, translateService } from '../../../control-plane/translate/build.ts';
import { structValue } from '../../../control-plane/translate/values.ts';
import { registryState, service, slice } from './fixtures.ts';

function roundTrip<T>(typeUrl: string, message: object | undefined): T {
  expect(message).toBeDefined();
  return unpack<T>(pack(typeUrl, message as object));
}

const web = (annotations?: Record<string, string>) =>
  service('shop', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'grpc', port: 9000 }, { name: 'tcp-admin', port: 7000 }] }, annotations);

describe('translateService', () => {
  it('emits one EDS cluster per port with Skein metadata and ADS config', () => {
    const res = translateService('shop/web', registryState([web()]));
    expect(res.clusters.envoy.map((c) => c.name)).toEqual([
      'outbound|80||web.shop.svc.cluster.local',
      'outbound|9000||web.shop.svc.cluster.local',
      'outbound|7000||web.shop.svc.cluster.local',
    ]);
    const c = roundTrip<Cluster__Output>(TYPE_URL.cluster, res.clusters.envoy[1]);
    expect(c).toMatchObject({
      name: 'outbound|9000||web.shop.svc.cluster.local',
      type: 'EDS',
      lb_policy: 'LEAST_REQUEST',
      connect_timeout: { seconds: '1', nanos: 0 },
      eds_cluster_config: {
        service_name: 'outbound|9000||web.shop.svc.cluster.local',
        eds_config: { ads: {}, resource_api_version: 'V3' },
      },
    });
    const md = c.metadata?.filter_metadata.skein;
    expect([structValue(md, 'protocol'), structValue(md, 'service'), structValue(md, 'port')]).toEqual(['http2', 'shop/web', 9000]);
    expect(structValue(roundTrip<Cluster__Output>(TYPE_URL.cluster, res.clusters.envoy[2]).metadata?.filter_metadata.skein, 'protocol')).toBe('tcp');
    // The proxyless scope gets ROUND_ROBIN (grpc-js-xds does not take LEAST_REQUEST), no security metadata, no
    // protocol options (gRPC always speaks HTTP/2), and otherwise the same cluster.
    const p = roundTrip<Cluster__Output>(TYPE_URL.cluster, res.clusters.proxyless[1]);
    expect(p.lb_policy).toBe('ROUND_ROBIN');
    expect(p.typed_extension_protocol_options).toEqual({});
    const { identities: _i, mtls_mode: _m, ...plain } = md?.fields ?? {};
    const withoutSecurity = {
      ...c,
      metadata: { ...c.metadata, filter_metadata: { skein: { fields: plain } } },
      typed_extension_protocol_options: {},
    };
    expect({ ...p, lb_policy: 'LEAST_REQUEST' }).toEqual(withoutSecurity);
  });

  it('tells Envoy through typed_extension_protocol_options that an http2 port speaks HTTP/2 (envoy scope only)', () => {
    const res = translateService('shop/web', registryState([web()]));
    const [http, grpc, tcp] = res.clusters.envoy.map((c) => roundTrip<Cluster__Output>(TYPE_URL.cluster, c));
    const options = grpc?.typed_extension_protocol_options ?? {};
    expect(Object.keys(options)).toEqual([PROTOCOL_OPTIONS_KEY.http]);
    const any = options[PROTOCOL_OPTIONS_KEY.http];
    expect(any?.type_url).toBe(EXTENSION_TYPE_URL.httpProtocolOptions);
    expect(unpack<HttpProtocolOptions__Output>(any as { type_url: string; value: Buffer })).toEqual({
      upstream_protocol_options: 'explicit_http_config',
      explicit_http_config: { protocol_config: 'http2_protocol_options', http2_protocol_options: { max_concurrent_streams: null } },
    });
    // HTTP/1.1 is Envoy's default: plain HTTP and TCP ports carry no options.
    expect(http?.typed_extension_protocol_options).toEqual({});
    expect(tcp?.typed_extension_protocol_options).toEqual({});
    for (const c of res.clusters.proxyless) {
      expect(roundTrip<Cluster__Output>(TYPE_URL.cluster, c).typed_extension_protocol_options).toEqual({});
    }
    // ExternalName ports are upstreams too: an h2c one gets the options as well.
    const ext = service('shop', 'ext', { type: 'ExternalName', externalName: 'api.example.com', ports: [{ name: 'h2c', port: 81 }] });
    const extCluster = roundTrip<Cluster__Output>(TYPE_URL.cluster, translateService('shop/ext', registryState([ext])).clusters.envoy[0]);
    expect(extCluster.type).toBe('LOGICAL_DNS');
    expect(Object.keys(extCluster.typed_extension_protocol_options)).toEqual([PROTOCOL_OPTIONS_KEY.http]);
  });

  it.each([
    [undefined, 'LEAST_REQUEST', 'ROUND_ROBIN'],
    ['least-request', 'LEAST_REQUEST', 'ROUND_ROBIN'],
    ['random', 'RANDOM', 'ROUND_ROBIN'],
    ['round-robin', 'ROUND_ROBIN', 'ROUND_ROBIN'],
    ['ring-hash', 'RING_HASH', 'RING_HASH'],
  ])('lb-policy %s is %s for envoy and %s for proxyless', (policy, envoy, proxyless) => {
    const res = translateService('shop/web', registryState([web(policy ? { 'skein.dev/lb-policy': policy } : undefined)]));
    const e = roundTrip<Cluster__Output>(TYPE_URL.cluster, res.clusters.envoy[0]);
    const p = roundTrip<Cluster__Output>(TYPE_URL.cluster, res.clusters.proxyless[0]);
    expect([e.lb_policy, p.lb_policy]).toEqual([envoy, proxyless]);
    expect(e.lb_config === 'ring_hash_lb_config').toBe(envoy === 'RING_HASH');
    // Proxyless clusters never carry the security metadata, so they are separate objects from the envoy ones.
    expect(structValue(p.metadata?.filter_metadata.skein, 'mtls_mode')).toBeUndefined();
    expect(structValue(e.metadata?.filter_metadata.skein, 'mtls_mode')).toBe('STRICT');
  });

  it('hashes on the skein.dev/hash-header header for ring-hash Services', () => {
    const res = translateService(
      'shop/web',
      registryState([web({ 'skein.dev/lb-policy': 'ring-hash', 'skein.dev/hash-header': 'X-User' })]),
    );
    const route = res.virtualHosts[0]?.remote.routes?.[0];
    expect(route?.route?.hash_policy).toEqual([{ header: { header_name: 'x-user' } }]);
    const bad = translateService('shop/web', registryState([web({ 'skein.dev/hash-header': 'x user' })]));
    expect(bad.problems.map((p) => p.message).join('\n')).toMatch(/skein\.dev\/hash-header.*"x user" is not an HTTP header name/);
    expect(bad.virtualHosts[0]?.remote.routes?.[0]?.route?.hash_policy).toBeUndefined();
  });

  it('keeps sessionAffinity: ClientIP as a ring hash on the caller\'s address (gRPC clients: on their channel), on HTTP and TCP ports', () => {
    const sticky = service('shop', 'web', { clusterIP: '10.96.0.10', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }, { name: 'tcp-admin', port: 7000 }] });
    const res = translateService('shop/web', registryState([sticky]));
    const [http, tcp] = res.clusters.envoy.map((c) => roundTrip<Cluster__Output>(TYPE_URL.cluster, c));
    expect([http?.lb_policy, tcp?.lb_policy]).toEqual(['RING_HASH', 'RING_HASH']);
    const tcpProxy = unpack<TcpProxy__Output>(res.tcpListeners[0]?.filter_chains?.[0]?.filters?.[0]?.typed_config as { type_url: string; value: Buffer });
    expect(tcpProxy.hash_policy).toEqual([{ policy_specifier: 'source_ip', source_ip: {} }]);
    expect(roundTrip<Cluster__Output>(TYPE_URL.cluster, res.clusters.proxyless[0]).lb_policy).toBe('RING_HASH');
    expect(res.virtualHosts[0]?.remote.routes?.[0]?.route?.hash_policy).toEqual([{ connection_properties: { source_ip: true } }]);
    const grpcRoute = res.proxyless.routes[0]?.virtual_hosts?.[0]?.routes?.[0]?.route;
    expect(grpcRoute?.hash_policy).toEqual([{ filter_state: { key: 'io.grpc.channel_id' } }]);
    expect(res.problems).toEqual([]);
    // An explicit annotation wins, and says so.
    const annotated = service('shop', 'web', { clusterIP: '10.96.0.10', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }] }, { 'skein.dev/lb-policy': 'round-robin' });
    const rr = translateService('shop/web', registryState([annotated]));
    expect(rr.clusters.envoy[0]?.lb_policy).toBe('ROUND_ROBIN');
    expect(rr.virtualHosts[0]?.remote.routes?.[0]?.route?.hash_policy).toBeUndefined();
    expect(rr.problems.map((p) => p.message).join('\n')).toMatch(/sessionAffinity: ClientIP is not kept: .*lb-policy"\] is "round-robin"/);
    // With a hash header the HTTP port hashes on it (and says ClientIP is not kept there); a TCP port has no header, so
    // it keeps the caller's address.
    const headerWins = service('shop', 'web', { clusterIP: '10.96.0.10', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }, { name: 'tcp-admin', port: 7000 }] }, { 'skein.dev/hash-header': 'x-user' });
    const hw = translateService('shop/web', registryState([headerWins]));
    expect(hw.clusters.envoy.map((c) => c.lb_policy)).toEqual(['RING_HASH', 'RING_HASH']);
    expect(hw.virtualHosts[0]?.remote.routes?.[0]?.route?.hash_policy).toEqual([{ header: { header_name: 'x-user' } }]);
    // Headless and ExternalName Services have no virtual IP, so kube-proxy keeps no affinity for them, nor does Skein.
    for (const [key, svc] of [
      ['shop/db', service('shop', 'db', { clusterIP: 'None', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }] })],
      ['shop/ext', service('shop', 'ext', { type: 'ExternalName', externalName: 'api.example.com', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }] })],
    ] as const) {
      const t = translateService(key, registryState([svc]));
      expect(t.clusters.envoy[0]?.lb_policy, key).toBe('LEAST_REQUEST');
      expect(t.virtualHosts[0]?.remote.routes?.[0]?.route?.hash_policy, key).toBeUndefined();
      expect(t.problems, key).toEqual([]);
    }
    // sessionAffinity: None (the default) changes nothing.
    const none = service('shop', 'web', { clusterIP: '10.96.0.10', sessionAffinity: 'None', ports: [{ name: 'http', port: 80 }] });
    expect(translateService('shop/web', registryState([none])).clusters.envoy[0]?.lb_policy).toBe('LEAST_REQUEST');
  });

  it('applies the connect-timeout annotation and the configured default', () => {
    const annotated = translateService('shop/web', registryState([web({ 'skein.dev/connect-timeout': '250ms' })]));
    expect(roundTrip<Cluster__Output>(TYPE_URL.cluster, annotated.clusters.envoy[0]).connect_timeout).toEqual({ seconds: '0', nanos: 250_000_000 });
    const configured = translateService('shop/web', registryState([web()]), { connectTimeoutMs: 3000, clusterDomain: 'corp' });
    expect(configured.clusters.envoy[0]?.name).toBe('outbound|80||web.shop.svc.corp');
    expect(configured.clusters.envoy[0]?.connect_timeout).toEqual({ seconds: 3, nanos: 0 });
  });

  it('turns ExternalName into a LOGICAL_DNS alias with no EDS and no cluster-IP domains', () => {
    const svc = service('shop', 'pay', { type: 'ExternalName', externalName: 'api.payments.example.com.', ports: [{ name: 'http', port: 80 }] });
    const res = translateService('shop/pay', registryState([svc]));
    expect(res.endpoints).toEqual([]);
    const c = roundTrip<Cluster__Output>(TYPE_URL.cluster, res.clusters.envoy[0]);
    expect(c).toMatchObject({ type: 'LOGICAL_DNS', dns_lookup_family: 'V4_PREFERRED', eds_cluster_config: null });
    const ep = c.load_assignment?.endpoints[0]?.lb_endpoints[0]?.endpoint?.address?.socket_address;
    expect([ep?.address, ep?.port_value]).toEqual(['api.payments.example.com', 80]);
    expect(res.virtualHosts[0]?.remote.domains).toEqual([
      'pay.shop.svc.cluster.local:80', 'pay.shop.svc:80', 'pay.shop:80', 'pay.shop.svc.cluster.local', 'pay.shop.svc', 'pay.shop',
    ]);
  });

  it('reports a TCP port that has no virtual IP to listen for (no spec.clusterIP, or headless) instead of dropping it silently', () => {
    const noIp = service('shop', 'cache', { ports: [{ name: 'redis', port: 6379 }, { name: 'http', port: 80 }] });
    const res = translateService('shop/cache', registryState([noIp]));
    expect(res.tcpListeners).toEqual([]);
    expect(res.problems.map((p) => [p.code, p.message])).toEqual([
      ['SKEIN_TRANSLATE_TCP_NO_CLUSTER_IP', 'Service shop/cache spec.ports[redis]: a TCP port needs spec.clusterIP (set one, e.g. 10.96.0.x, in the registry file); sidecars get no listener for port 6379'],
    ]);
    const headless = translateService('shop/cache', registryState([service('shop', 'cache', { clusterIP: 'None', ports: [{ name: 'redis', port: 6379 }] })]));
    expect(headless.problems.map((p) => p.message).join('\n')).toContain('headless Services get no TCP listener');
  });

  it('makes an ExternalName naming a mesh Service an alias of it: its names route to that Service\'s clusters (Istio 1.21+)', () => {
    const target = service('f', 'web', { clusterIP: '10.96.1.1', ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9090 }, { name: 'tcp-db', port: 5432 }] });
    const alias = service('f', 'alias', { type: 'ExternalName', externalName: 'web.f.svc.cluster.local' }); // no ports: the target's
    const state = registryState([target, alias]);
    const res = translateService('f/alias', state);
    expect(res.clusters.envoy).toEqual([]); // no DNS cluster: traffic goes to web's clusters, with their mTLS
    expect(res.dependsOn).toEqual(['f/web']);
    expect(res.virtualHosts.map((v) => [v.name, v.remote.routes?.[0]?.route?.cluster])).toEqual([
      ['alias.f.svc.cluster.local:80', 'outbound|80||web.f.svc.cluster.local'],
      ['alias.f.svc.cluster.local:9090', 'outbound|9090||web.f.svc.cluster.local'],
    ]);
    expect(res.virtualHosts[0]?.remote.domains).toContain('alias.f');
    // The target's own routing goes with it: its canary split and timeout.
    const split = { 'skein.dev/routes': '[{"prefix": "/", "weighted": [{"service": "web", "port": 80, "weight": 9}, {"service": "canary", "port": 80, "weight": 1}]}]', 'skein.dev/timeout': '3s' };
    const withSplit = registryState([service('f', 'web', { clusterIP: '10.96.1.1', ports: [{ name: 'http', port: 80 }] }, split), service('f', 'canary', { clusterIP: '10.96.1.2', ports: [{ name: 'http', port: 80 }] }), alias]);
    const route = translateService('f/alias', withSplit).virtualHosts[0]?.remote.routes?.[0]?.route;
    expect(route?.weighted_clusters?.clusters?.map((c) => c.name)).toEqual(['outbound|80||web.f.svc.cluster.local', 'outbound|80||canary.f.svc.cluster.local']);
    expect(route?.timeout).toEqual({ seconds: 3, nanos: 0 });
    expect(translateService('f/alias', withSplit).dependsOn).toEqual(['f/web', 'f/canary']);
    // Its own routing annotations would be ignored: said so.
    const annotated = service('f', 'alias', { type: 'ExternalName', externalName: 'web.f.svc.cluster.local' }, { 'skein.dev/timeout': '1s' });
    expect(translateService('f/alias', registryState([target, annotated])).problems.map((p) => p.message)).toEqual([
      'Service f/alias metadata.annotations["skein.dev/timeout"]: ignored: this ExternalName is an alias of f/web, whose own routing applies; set it there',
    ]);
    // Another Service's weighted route to the alias goes to the aliased Service's cluster (the alias has none).
    const front = service('f', 'front', { clusterIP: '10.96.1.3', ports: [{ name: 'http', port: 80 }] }, { 'skein.dev/routes': '[{"prefix": "/a", "cluster": "alias:80"}]' });
    const viaAlias = translateService('f/front', registryState([target, alias, front]));
    expect(viaAlias.virtualHosts[0]?.remote.routes?.find((r) => r.match?.prefix === '/a')?.route?.cluster).toBe('outbound|80||web.f.svc.cluster.local');
    expect(viaAlias.dependsOn).toEqual(['f/alias', 'f/web']);
    // Listed ports narrow it; a port the target lacks is reported.
    const narrowed = translateService('f/alias', registryState([target, service('f', 'alias', { type: 'ExternalName', externalName: 'web.f.svc', ports: [{ port: 80 }, { port: 81 }] })]));
    expect(narrowed.virtualHosts.map((v) => v.name)).toEqual(['alias.f.svc.cluster.local:80']);
    expect(narrowed.problems.map((p) => p.message)).toEqual(['Service f/alias spec.ports: 81 not HTTP ports of f/web, which spec.externalName names; those ports are not served']);
    // A name of no Service (yet) stays a DNS alias, and is retranslated when the Service appears.
    const dns = translateService('f/alias', registryState([alias]));
    expect(dns.clusters.envoy).toHaveLength(0); // no ports and no target: nothing to serve
    const dnsWithPort = translateService('f/alias', registryState([service('f', 'alias', { type: 'ExternalName', externalName: 'web.f.svc.cluster.local', ports: [{ name: 'http', port: 80 }] })]));
    expect(roundTrip<Cluster__Output>(TYPE_URL.cluster, dnsWithPort.clusters.envoy[0]).type).toBe('LOGICAL_DNS');
    expect(dnsWithPort.dependsOn).toEqual(['f/web']);
  });

  it('answers a dual-stack Service on both of its virtual IPs', () => {
    const dual = service('shop', 'web', { clusterIP: '10.96.5.1', clusterIPs: ['10.96.5.1', 'FD00::5:1'], ipFamilies: ['IPv4', 'IPv6'], ports: [{ name: 'http', port: 80 }] });
    const domains = translateService('shop/web', registryState([dual])).virtualHosts[0]?.remote.domains;
    expect(domains).toContain('10.96.5.1:80');
    expect(domains).toContain('[fd00::5:1]:80');
    expect(domains).toContain('[fd00::5:1]');
  });

  it('reports an ExternalName Service without externalName and publishes nothing for it', () => {
    const res = translateService('shop/x', registryState([service('shop', 'x', { type: 'ExternalName', ports: [{ port: 80 }] })]));
    expect(res.clusters.envoy).toEqual([]);
    expect(res.problems[0]?.code).toBe('SKEIN_TRANSLATE_EXTERNAL_NAME');
  });

  it('returns nothing for a Service that is gone', () => {
    const res = translateService('shop/gone', registryState([]));
    expect(res.exists).toBe(false);
    expect(res.clusters.envoy).toEqual([]);
  });

  it('makes a bound-less TCP listener on the cluster IP for TCP ports', () => {
    const res = translateService('shop/web', registryState([web()]));
    expect(res.tcpListeners.map((l) => l.name)).toEqual(['10.96.0.10_7000']);
    const l = roundTrip<Listener__Output>(TYPE_URL.listener, res.tcpListeners[0]);
    expect(l.address?.socket_address).toMatchObject({ address: '10.96.0.10', port_value: 7000 });
    expect(l.bind_to_port).toEqual({ value: false });
    expect(l.traffic_direction).toBe('OUTBOUND');
    const f = l.filter_chains[0]?.filters[0];
    expect(f?.name).toBe('envoy.filters.network.tcp_proxy');
    expect(f?.typed_config?.type_url).toBe(EXTENSION_TYPE_URL.tcpProxy);
    expect(unpack<TcpProxy__Output>(f?.typed_config as { type_url: string; value: Buffer }).cluster).toBe('outbound|7000||web.shop.svc.cluster.local');
  });

  it('makes vhosts for HTTP and gRPC ports only, with short names only in the local variant', () => {
    const res = translateService('shop/web', registryState([web()]));
    expect(res.virtualHosts.map((v) => v.name)).toEqual(['web.shop.svc.cluster.local:80', 'web.shop.svc.cluster.local:9000']);
    const grpc = res.virtualHosts[1];
    expect(grpc?.remote.domains).toEqual(['web.shop.svc.cluster.local:9000', 'web.shop.svc:9000', 'web.shop:9000', '10.96.0.10:9000']);
    expect(grpc?.local.domains).toEqual([...(grpc?.remote.domains ?? []), 'web:9000']);
    expect(res.virtualHosts[0]?.local.domains).toContain('web');
    expect(res.virtualHosts[0]?.remote.routes).toEqual([
      { match: { prefix: '/' }, route: { cluster: 'outbound|80||web.shop.svc.cluster.local', timeout: { seconds: 0, nanos: 0 } } },
    ]);
  });

  it('gives proxyless clients a listener and a route table per port', () => {
    const res = translateService('shop/web', registryState([web({ 'skein.dev/timeout': '5s' })]));
    expect(res.proxyless.listeners.map((l) => l.name)).toEqual([
      'web.shop.svc.cluster.local:80', 'web.shop.svc.cluster.local:9000', 'web.shop.svc.cluster.local:7000',
    ]);
    const l = roundTrip<Listener__Output>(TYPE_URL.listener, res.proxyless.listeners[1]);
    const hcm = unpack<HttpConnectionManager__Output>(l.api_listener?.api_listener as { type_url: string; value: Buffer });
    expect(hcm.rds).toMatchObject({ route_config_name: 'web.shop.svc.cluster.local:9000', config_source: { ads: {} } });
    expect(hcm.http_filters.map((f) => [f.name, f.typed_config?.type_url])).toEqual([['envoy.filters.http.router', EXTENSION_TYPE_URL.router]]);
    const rt = roundTrip<RouteConfiguration__Output>(TYPE_URL.route, res.proxyless.routes[1]);
    expect(rt.name).toBe('web.shop.svc.cluster.local:9000');
    expect(rt.virtual_hosts[0]?.domains).toEqual(['web.shop.svc.cluster.local:9000', 'web.shop.svc.cluster.local']);
    expect(rt.virtual_hosts[0]?.routes[0]?.route).toMatchObject({ cluster: 'outbound|9000||web.shop.svc.cluster.local', timeout: { seconds: '5' } });
    // gRPC applies max_stream_duration, not timeout (gRFC A31).
    expect(rt.virtual_hosts[0]?.routes[0]?.route?.max_stream_duration).toMatchObject({ max_stream_duration: { seconds: '5' } });
  });

  it('resolves skein.dev/routes targets to clusters, before the default route', () => {
    const routes = JSON.stringify([
      { prefix: '/api', cluster: 'api:8080' },
      { prefix: '/v2', weighted: [{ service: 'api', port: 8080, weight: 90 }, { service: 'web', port: 80, weight: 10 }] },
    ]);
    const api = service('shop', 'api', { clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 8080 }] });
    const res = translateService('shop/web', registryState([web({ 'skein.dev/routes': routes }), api]));
    expect(res.problems).toEqual([]);
    expect(res.dependsOn).toEqual(['shop/api']);
    const r = res.virtualHosts[0]?.remote.routes ?? [];
    expect(r.map((x) => x.match?.prefix)).toEqual(['/api', '/v2', '/']);
    expect(r[0]?.route?.cluster).toBe('outbound|8080||api.shop.svc.cluster.local');
    expect(r[1]?.route?.weighted_clusters?.clusters).toEqual([
      { name: 'outbound|8080||api.shop.svc.cluster.local', weight: { value: 90 } },
      { name: 'outbound|80||web.shop.svc.cluster.local', weight: { value: 10 } },
    ]);
  });

  it('keeps the default route and reports unknown route targets', () => {
    const res = translateService('shop/web', registryState([web({ 'skein.dev/routes': '- prefix: /a\n  cluster: nope.other:80\n- prefix: /b\n  cluster: web:81' })]));
    expect(res.virtualHosts[0]?.remote.routes?.map((x) => x.match?.prefix)).toEqual(['/']);
    expect(res.problems.map((p) => [p.service, p.code])).toEqual([
      ['shop/web', 'SKEIN_TRANSLATE_ROUTE_TARGET'],
      ['shop/web', 'SKEIN_TRANSLATE_ROUTE_TARGET'],
    ]);
    expect(res.problems[0]?.message).toContain('other/nope:80 does not exist');
    expect(res.problems[1]?.message).toContain('shop/web:81 has no TCP port 81');
    expect(res.dependsOn).toEqual(['other/nope']);
  });

  it('reports a bad annotation and still publishes the rest of the Service', () => {
    const res = translateService('shop/web', registryState([web({ 'skein.dev/lb-policy': 'fastest' })]));
    expect(res.clusters.envoy).toHaveLength(3);
    expect(res.clusters.envoy[0]?.lb_policy).toBe('LEAST_REQUEST');
    expect(res.problems).toEqual([expect.objectContaining({ service: 'shop/web', code: 'SKEIN_TRANSLATE_ANNOTATION' })]);
  });
});

describe('assemble', () => {
  const api = service('shop', 'api', { clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80 }] });
  const other = service('blog', 'api', { clusterIP: '10.96.0.30', ports: [{ name: 'http', port: 80 }] });
  const db = service('blog', 'db', { clusterIP: '10.96.0.31', ports: [{ name: 'tcp', port: 5432 }] });
  const state = registryState([web(), api, other, db], [slice('shop', 'web', 'w', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1' }])]);
  const results = ['shop/web', 'shop/api', 'blog/api', 'blog/db'].map((k) => translateService(k as `${string}/${string}`, state));

  it('builds envoy scopes per namespace (and requested ones) plus proxyless, sharing CDS and EDS', () => {
    const { scopes, problems } = assemble(results, ['empty']);
    expect(problems).toEqual([]);
    expect([...scopes.keys()]).toEqual(['envoy/blog', 'envoy/empty', 'envoy/shop', 'proxyless']);
    const shop = scopes.get('envoy/shop');
    const blog = scopes.get('envoy/blog');
    expect(shop?.get(TYPE_URL.cluster)).toBe(blog?.get(TYPE_URL.cluster));
    expect(shop?.get(TYPE_URL.endpoint)).toBe(scopes.get('proxyless')?.get(TYPE_URL.endpoint));
    expect([...(shop?.get(TYPE_URL.listener)?.keys() ?? [])].sort()).toEqual(['10.96.0.10_7000', '10.96.0.31_5432', 'virtualOutbound']);
    expect([...(shop?.get(TYPE_URL.route)?.keys() ?? [])]).toEqual(['outbound/shop']);
    expect([...(scopes.get('proxyless')?.get(TYPE_URL.route)?.keys() ?? [])]).toContain('api.blog.svc.cluster.local:80');
  });

  it('points virtualOutbound at its namespace table with the contract settings', () => {
    const { scopes } = assemble(results);
    const vo = roundTrip<Listener__Output>(TYPE_URL.listener, scopes.get('envoy/blog')?.get(TYPE_URL.listener)?.get('virtualOutbound'));
    expect(vo.address?.socket_address).toMatchObject({ address: '0.0.0.0', port_value: 15001 });
    expect(vo.traffic_direction).toBe('OUTBOUND');
    const f = vo.filter_chains[0]?.filters[0];
    expect(f?.name).toBe('envoy.filters.network.http_connection_manager');
    const hcm = unpack<HttpConnectionManager__Output>(f?.typed_config as { type_url: string; value: Buffer });
    expect(hcm).toMatchObject({
      stat_prefix: 'outbound',
      codec_type: 'AUTO',
      rds: { route_config_name: 'outbound/blog', config_source: { ads: {}, resource_api_version: 'V3' } },
      http_protocol_options: { allow_absolute_url: { value: true } },
      request_headers_timeout: { seconds: '10' },
      stream_idle_timeout: { seconds: '300' },
      max_request_headers_kb: { value: 60 },
    });
  });

  it('resolves short names in the proxy namespace only and never repeats a domain in a table', () => {
    const { scopes } = assemble(results);
    for (const ns of ['shop', 'blog']) {
      const rt = roundTrip<RouteConfiguration__Output>(TYPE_URL.route, scopes.get(`envoy/${ns}`)?.get(TYPE_URL.route)?.get(`outbound/${ns}`));
      const all = rt.virtual_hosts.flatMap((v) => v.domains);
      expect(new Set(all).size, `outbound/${ns} domains unique`).toBe(all.length);
      const owner = (d: string) => rt.virtual_hosts.find((v) => v.domains.includes(d))?.name;
      expect(owner('api')).toBe(`api.${ns}.svc.cluster.local:80`);
      expect(owner('api:80')).toBe(`api.${ns}.svc.cluster.local:80`);
      expect(rt.virtual_hosts.map((v) => v.name)).toEqual([
        'api.blog.svc.cluster.local:80', 'api.shop.svc.cluster.local:80', 'web.shop.svc.cluster.local:80', 'web.shop.svc.cluster.local:9000',
      ]);
    }
  });

  it('removes a domain two Services claim (same cluster IP) from the later one and reports it', () => {
    const clash = service('shop', 'zz', { clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80 }, { name: 'tcp', port: 7000 }] });
    const dup = service('shop', 'aa', { clusterIP: '10.96.0.20', ports: [{ name: 'tcp', port: 7000 }] });
    const s = registryState([api, clash, dup]);
    const { scopes, problems } = assemble(['shop/api', 'shop/zz', 'shop/aa'].map((k) => translateService(k as `${string}/${string}`, s)));
    const rt = scopes.get('envoy/shop')?.get(TYPE_URL.route)?.get('outbound/shop') as { virtual_hosts: { name: string; domains: string[] }[] };
    const zz = rt.virtual_hosts.find((v) => v.name === 'zz.shop.svc.cluster.local:80');
    expect(zz?.domains).not.toContain('10.96.0.20:80');
    expect(rt.virtual_hosts.find((v) => v.name === 'api.shop.svc.cluster.local:80')?.domains).toContain('10.96.0.20:80');
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ service: 'shop/zz', code: 'SKEIN_TRANSLATE_DUPLICATE_DOMAIN' }),
        expect.objectContaining({ service: 'shop/zz', code: 'SKEIN_TRANSLATE_DUPLICATE_NAME' }),
      ]),
    );
    const tcp = scopes.get('envoy/shop')?.get(TYPE_URL.listener)?.get('10.96.0.20_7000') as { filter_chains: { filters: { typed_config: { type_url: string; value: Buffer } }[] }[] };
    expect(unpack<TcpProxy__Output>(tcp.filter_chains[0]?.filters[0]?.typed_config as { type_url: string; value: Buffer }).cluster).toBe(
      'outbound|7000||aa.shop.svc.cluster.local',
    );
  });

  it('encodes every assembled resource', () => {
    const { scopes } = assemble(results, ['empty']);
    for (const [, types] of scopes) for (const [typeUrl, map] of types) for (const [, msg] of map) expect(() => unpack(pack(typeUrl, msg))).not.toThrow();
  });
});
