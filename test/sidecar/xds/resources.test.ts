// Tests xDS resource validation: every error with its field path, and the mapping into the sidecar's MeshConfig model.
import { describe, expect, it } from 'vitest';
import { EXTENSION_TYPE_URL, pack, TYPE_URL, type TypeUrl } from '../../../proto/index.ts';
import { decodeResource, decodeResources } from '../../../sidecar/xds/resources.ts';

const CLUSTER = 'outbound|80||web.default.svc.cluster.local';
const ads = { ads: {}, resource_api_version: 'V3' };
const str = (s: string) => ({ stringValue: s });
const num = (n: number) => ({ numberValue: n });

function cluster(overrides: object = {}) {
  return {
    name: CLUSTER,
    type: 'EDS',
    eds_cluster_config: { eds_config: ads, service_name: CLUSTER },
    connect_timeout: { seconds: 1 },
    lb_policy: 'LEAST_REQUEST',
    metadata: { filter_metadata: { skein: { fields: { protocol: str('http'), port: num(80) } } } },
    ...overrides,
  };
}

function decode<T extends TypeUrl>(typeUrl: T, message: object) {
  return decodeResource(typeUrl, pack(typeUrl, message));
}

function errorsOf(typeUrl: TypeUrl, message: object): readonly string[] {
  const r = decode(typeUrl, message);
  if (r.ok) throw new Error('expected validation errors');
  return r.errors;
}

function hcm(overrides: object = {}) {
  return pack(EXTENSION_TYPE_URL.httpConnectionManager, {
    stat_prefix: 'outbound',
    rds: { config_source: ads, route_config_name: 'outbound/default' },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: pack(EXTENSION_TYPE_URL.router, {}) }],
    request_headers_timeout: { seconds: 10 },
    stream_idle_timeout: { seconds: 300 },
    max_request_headers_kb: { value: 60 },
    ...overrides,
  });
}

function listener(filters: object[], overrides: object = {}) {
  return {
    name: 'virtualOutbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [{ filters }],
    ...overrides,
  };
}

describe('Cluster', () => {
  it('maps an EDS cluster', () => {
    const r = decode(TYPE_URL.cluster, cluster());
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.resource.name).toBe(CLUSTER);
    expect(r.resource.value.edsServiceName).toBe(CLUSTER);
    expect(r.resource.value.config).toMatchObject({
      name: CLUSTER,
      kind: 'eds',
      lbPolicy: 'p2c-ewma',
      connectTimeoutMs: 1000,
      protocol: 'http1',
      endpoints: [],
    });
    expect(r.resource.version).toMatch(/^[0-9a-f]{16}$/);
  });

  it.each([
    ['ROUND_ROBIN', 'round-robin'],
    ['RANDOM', 'random'],
    ['RING_HASH', 'ring-hash'],
    ['LEAST_REQUEST', 'p2c-ewma'],
  ])('maps lb_policy %s to %s', (policy, expected) => {
    const r = decode(TYPE_URL.cluster, cluster({ lb_policy: policy }));
    expect(r.ok && r.resource.value.config.lbPolicy).toBe(expected);
  });

  it.each([
    ['http2', 'http2'],
    ['tcp', 'tcp'],
    ['http', 'http1'],
  ])('maps skein.protocol %s to %s', (p, expected) => {
    const r = decode(TYPE_URL.cluster, cluster({ metadata: { filter_metadata: { skein: { fields: { protocol: str(p) } } } } }));
    expect(r.ok && r.resource.value.config.protocol).toBe(expected);
  });

  it('defaults service_name to the cluster name and connect_timeout to 5s', () => {
    const r = decode(TYPE_URL.cluster, cluster({ eds_cluster_config: { eds_config: ads }, connect_timeout: null }));
    expect(r.ok && r.resource.value.edsServiceName).toBe(CLUSTER);
    expect(r.ok && r.resource.value.config.connectTimeoutMs).toBe(5000);
  });

  it('holds a timeout longer than a Node timer can run (about 24.8 days) to that longest timer', () => {
    // 600 h: given to setTimeout as it is, Node fires it after 1 ms and every connection would time out at once.
    const r = decode(TYPE_URL.cluster, cluster({ connect_timeout: { seconds: 600 * 3600 } }));
    expect(r.ok && r.resource.value.config.connectTimeoutMs).toBe(2 ** 31 - 1);
    const day = decode(TYPE_URL.cluster, cluster({ connect_timeout: { seconds: 86_400 } }));
    expect(day.ok && day.resource.value.config.connectTimeoutMs).toBe(86_400_000);
  });

  it('maps a LOGICAL_DNS cluster to a dns cluster', () => {
    const r = decode(
      TYPE_URL.cluster,
      cluster({
        type: 'LOGICAL_DNS',
        eds_cluster_config: null,
        dns_lookup_family: 'V4_PREFERRED',
        load_assignment: {
          cluster_name: CLUSTER,
          endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 'example.com', port_value: 443 } } } }] }],
        },
      }),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.resource.value.edsServiceName).toBeUndefined();
    expect(r.resource.value.config).toMatchObject({ kind: 'dns', dns: { host: 'example.com', port: 443 } });
  });

  it('treats an unset type as STATIC, with endpoints inline', () => {
    const r = decode(TYPE_URL.cluster, {
      name: 'static',
      lb_policy: 'ROUND_ROBIN',
      load_assignment: {
        cluster_name: 'static',
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 80 } } } }] }],
      },
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.resource.value.edsServiceName).toBeUndefined();
    expect(r.resource.value.config).toMatchObject({ kind: 'eds', endpoints: [{ address: '10.0.0.1', port: 80, weight: 1, health: 'healthy' }] });
    expect(r.resource.value.config.endpointsVersion).toBe(r.resource.version);
    expect(errorsOf(TYPE_URL.cluster, { name: 'static' })).toEqual(['Cluster "static": load_assignment: is required for a STATIC cluster']);
  });

  it('reports every error with its field path', () => {
    const errors = errorsOf(
      TYPE_URL.cluster,
      cluster({
        lb_policy: 'MAGLEV',
        connect_timeout: { seconds: 0 },
        eds_cluster_config: { eds_config: { self: {} } },
        metadata: { filter_metadata: { skein: { fields: { protocol: str('quic') } } } },
        transport_socket: { name: 'tls' },
      }),
    );
    const p = `Cluster "${CLUSTER}"`;
    expect(errors).toEqual([
      `${p}: lb_policy: MAGLEV is not supported`,
      `${p}: connect_timeout: must be greater than 0`,
      `${p}: metadata.filter_metadata.skein.protocol: "quic" is not one of http, http2, tcp`,
      `${p}: transport_socket: upstream TLS configured by xDS is not supported`,
      `${p}: eds_cluster_config.eds_config: self is not supported (only ads {})`,
    ]);
  });

  it('rejects ORIGINAL_DST, a missing name and a DNS cluster without exactly one endpoint', () => {
    expect(errorsOf(TYPE_URL.cluster, cluster({ type: 'ORIGINAL_DST' }))).toContain(
      `Cluster "${CLUSTER}": type: ORIGINAL_DST is not supported (EDS, STATIC, LOGICAL_DNS, STRICT_DNS)`,
    );
    expect(errorsOf(TYPE_URL.cluster, cluster({ name: '' }))).toContain('Cluster "": name: is required');
    expect(errorsOf(TYPE_URL.cluster, cluster({ type: 'LOGICAL_DNS', load_assignment: { endpoints: [] } }))).toContain(
      `Cluster "${CLUSTER}": load_assignment: a LOGICAL_DNS cluster needs exactly one endpoint, got 0`,
    );
  });
});

describe('ClusterLoadAssignment', () => {
  const ep = (address: string, port: number, extra: object = {}) => ({
    endpoint: { address: { socket_address: { address, port_value: port } } },
    ...extra,
  });

  it('maps endpoint weights (not zone weights, as Envoy by default), health and skein metadata', () => {
    const r = decode(TYPE_URL.endpoint, {
      cluster_name: CLUSTER,
      endpoints: [
        {
          locality: { zone: 'a' },
          load_balancing_weight: { value: 3 },
          lb_endpoints: [
            ep('10.0.0.1', 8080, {
              health_status: 'HEALTHY',
              load_balancing_weight: { value: 2 },
              metadata: {
                filter_metadata: {
                  skein: {
                    fields: { pod: str('web-1'), namespace: str('default'), service_account: str('web'), inbound_port: num(15006), proxy_protocol: str('outside-tls') },
                  },
                },
              },
            }),
            ep('10.0.0.2', 8080, { health_status: 'DRAINING' }),
          ],
        },
        {
          lb_endpoints: [
            ep('10.0.0.3', 8080, { health_status: 'UNKNOWN' }),
            ep('10.0.0.4', 8080, { health_status: 'UNHEALTHY' }),
            ep('10.0.0.5', 8080, { health_status: 'TIMEOUT' }),
            ep('10.0.0.6', 8080, { health_status: 'DEGRADED' }),
          ],
        },
      ],
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.resource.name).toBe(CLUSTER);
    expect(r.resource.value.endpoints).toEqual([
      {
        address: '10.0.0.1',
        port: 8080,
        weight: 2,
        health: 'healthy',
        inboundPort: 15006,
        proxyProtocol: 'outside-tls',
        pod: 'web-1',
        namespace: 'default',
        serviceAccount: 'web',
      },
      { address: '10.0.0.2', port: 8080, weight: 1, health: 'draining' },
      { address: '10.0.0.3', port: 8080, weight: 1, health: 'healthy' },
      { address: '10.0.0.4', port: 8080, weight: 1, health: 'unhealthy' },
      { address: '10.0.0.5', port: 8080, weight: 1, health: 'unhealthy' },
      { address: '10.0.0.6', port: 8080, weight: 1, health: 'unhealthy' },
    ]);
  });

  it('accepts an empty assignment', () => {
    const r = decode(TYPE_URL.endpoint, { cluster_name: CLUSTER, endpoints: [] });
    expect(r.ok && r.resource.value.endpoints).toEqual([]);
  });

  it('reports every error with its field path', () => {
    const errors = errorsOf(TYPE_URL.endpoint, {
      cluster_name: CLUSTER,
      endpoints: [
        {
          priority: 1,
          load_balancing_weight: { value: 0 },
          lb_endpoints: [
            ep('10.0.0.1', 8080),
            ep('10.0.0.2', 70000),
            { endpoint: { address: { socket_address: { address: 'web.example', named_port: 'http' } } } },
            { health_status: 'HEALTHY' },
            ep('10.0.0.3', 80, {
              load_balancing_weight: { value: 0 },
              metadata: { filter_metadata: { skein: { fields: { pod: num(1), inbound_port: num(0), proxy_protocol: str('before') } } } },
            }),
          ],
        },
      ],
    });
    const p = `ClusterLoadAssignment "${CLUSTER}"`;
    expect(errors).toEqual([
      `${p}: endpoints[0].priority: priority 1 is not supported (only 0)`,
      `${p}: endpoints[0].load_balancing_weight: must be at least 1`,
      `${p}: endpoints[0].lb_endpoints[1].endpoint.address.socket_address.port_value: must be 1-65535`,
      `${p}: endpoints[0].lb_endpoints[2].endpoint.address.socket_address.address: "web.example" is not an IP address`,
      `${p}: endpoints[0].lb_endpoints[2].endpoint.address.socket_address.named_port: named ports are not supported`,
      `${p}: endpoints[0].lb_endpoints[3].endpoint: is required`,
      `${p}: endpoints[0].lb_endpoints[4].load_balancing_weight: must be at least 1`,
      `${p}: endpoints[0].lb_endpoints[4].metadata.filter_metadata.skein.pod: must be a string`,
      `${p}: endpoints[0].lb_endpoints[4].metadata.filter_metadata.skein.inbound_port: must be 1-65535`,
      `${p}: endpoints[0].lb_endpoints[4].metadata.filter_metadata.skein.proxy_protocol: "before" is not one of inside-tls, outside-tls, none`,
    ]);
  });
});

describe('Listener', () => {
  it('maps an HTTP connection manager with RDS', () => {
    const r = decode(TYPE_URL.listener, listener([{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm() }]));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.resource.value).toEqual({
      kind: 'http',
      name: 'virtualOutbound',
      version: r.resource.version,
      address: '0.0.0.0',
      port: 15001,
      routeConfigName: 'outbound/default',
      requestHeadersTimeoutMs: 10_000,
      streamIdleTimeoutMs: 300_000,
      maxRequestHeadersKb: 60,
    });
  });

  it('maps an inline route_config', () => {
    const typed = hcm({
      rds: null,
      route_config: {
        name: 'local',
        virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: CLUSTER } }] }],
      },
    });
    const r = decode(TYPE_URL.listener, listener([{ name: 'hcm', typed_config: typed }]));
    expect(r.ok).toBe(true);
    if (!r.ok || r.resource.value.kind !== 'http') return;
    expect(r.resource.value.routeConfigName).toBe('local');
    expect(r.resource.value.inlineRoutes?.virtualHosts[0]?.routes[0]?.action).toMatchObject({
      kind: 'forward',
      targets: [{ cluster: CLUSTER, weight: 1 }],
    });
  });

  it('maps a TCP proxy listener', () => {
    const tcp = pack(EXTENSION_TYPE_URL.tcpProxy, { stat_prefix: 'db', cluster: CLUSTER, idle_timeout: { seconds: 60 } });
    const r = decode(
      TYPE_URL.listener,
      listener([{ name: 'envoy.filters.network.tcp_proxy', typed_config: tcp }], {
        name: '10.96.0.10_5432',
        address: { socket_address: { address: '10.96.0.10', port_value: 5432 } },
        bind_to_port: { value: false },
      }),
    );
    expect(r.ok && r.resource.value).toMatchObject({
      kind: 'tcp',
      address: '10.96.0.10',
      port: 5432,
      cluster: CLUSTER,
      idleTimeoutMs: 60_000,
    });
    expect(r.ok && 'hashSourceIp' in r.resource.value).toBe(false);
  });

  it('reads a TCP proxy\'s hash on the caller\'s address, and names a hash it cannot use', () => {
    const at = { name: '10.96.0.10_6379', address: { socket_address: { address: '10.96.0.10', port_value: 6379 } }, bind_to_port: { value: false } };
    const sticky = pack(EXTENSION_TYPE_URL.tcpProxy, { stat_prefix: 'kv', cluster: CLUSTER, hash_policy: [{ source_ip: {} }] });
    const r = decode(TYPE_URL.listener, listener([{ name: 'envoy.filters.network.tcp_proxy', typed_config: sticky }], at));
    expect(r.ok && r.resource.value).toMatchObject({ kind: 'tcp', hashSourceIp: true });
    const other = pack(EXTENSION_TYPE_URL.tcpProxy, { stat_prefix: 'kv', cluster: CLUSTER, hash_policy: [{ filter_state: { key: 'k' } }] });
    const bad = decode(TYPE_URL.listener, listener([{ name: 'envoy.filters.network.tcp_proxy', typed_config: other }], at));
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.errors.join('\n')).toMatch(/filters\[0\]\.typed_config\.hash_policy\[0\]: only source_ip is supported/);
  });

  it('reports every HCM error with its field path', () => {
    const typed = hcm({
      codec_type: 'HTTP3',
      rds: { config_source: { self: {} }, route_config_name: '' },
      http_filters: [
        { name: 'envoy.filters.http.router', typed_config: pack(EXTENSION_TYPE_URL.router, {}) },
        { name: 'envoy.filters.http.fault' },
      ],
      request_timeout: { seconds: 5 },
    });
    const errors = errorsOf(TYPE_URL.listener, listener([{ name: 'hcm', typed_config: typed }]));
    const p = 'Listener "virtualOutbound": filter_chains[0].filters[0].typed_config';
    expect(errors).toEqual([
      `${p}.codec_type: HTTP3 is not supported`,
      `${p}.rds.config_source: only ads {} is supported`,
      `${p}.rds.route_config_name: is required`,
      `${p}.http_filters[0]: the router must be the last filter`,
      `${p}.http_filters[1]: "envoy.filters.http.fault": the last filter must be the router`,
      `${p}.request_timeout: is not supported (use a route timeout)`,
    ]);
  });

  it('skips optional HTTP filters before the router and rejects required ones', () => {
    const filters = (optional: boolean) =>
      hcm({
        http_filters: [
          { name: 'envoy.filters.http.cors', is_optional: optional },
          { name: 'envoy.filters.http.router', typed_config: pack(EXTENSION_TYPE_URL.router, {}) },
        ],
      });
    expect(decode(TYPE_URL.listener, listener([{ name: 'hcm', typed_config: filters(true) }])).ok).toBe(true);
    expect(errorsOf(TYPE_URL.listener, listener([{ name: 'hcm', typed_config: filters(false) }]))).toEqual([
      'Listener "virtualOutbound": filter_chains[0].filters[0].typed_config.http_filters[0]: "envoy.filters.http.cors" is not supported (mark it is_optional to skip it)',
    ]);
  });

  it('reports listener-level errors', () => {
    const errors = errorsOf(TYPE_URL.listener, {
      name: 'bad',
      address: { socket_address: { address: 'localhost', port_value: 0 } },
      filter_chains: [
        {
          filter_chain_match: { destination_port: { value: 80 } },
          transport_socket: { name: 'tls' },
          filters: [
            { name: 'envoy.filters.network.rbac' },
            { name: 'x', typed_config: pack(EXTENSION_TYPE_URL.router, {}) },
          ],
        },
      ],
    });
    expect(errors).toEqual([
      'Listener "bad": address.socket_address.address: "localhost" is not an IP address',
      'Listener "bad": address.socket_address.port_value: must be 1-65535',
      'Listener "bad": filter_chains[0].filter_chain_match: is not supported',
      'Listener "bad": filter_chains[0].transport_socket: TLS termination by xDS is not supported',
      'Listener "bad": filter_chains[0].filters[0]: "envoy.filters.network.rbac": only one network filter (http_connection_manager or tcp_proxy) is supported',
      `Listener "bad": filter_chains[0].filters[1].typed_config: "${EXTENSION_TYPE_URL.router}" is not supported`,
    ]);
    expect(errorsOf(TYPE_URL.listener, listener([], { filter_chains: [] }))).toEqual([
      'Listener "virtualOutbound": filter_chains: exactly one filter chain is supported, got 0',
    ]);
    const tcp = pack(EXTENSION_TYPE_URL.tcpProxy, { stat_prefix: 'x' });
    expect(errorsOf(TYPE_URL.listener, listener([{ name: 't', typed_config: tcp }]))).toEqual([
      'Listener "virtualOutbound": filter_chains[0].filters[0].typed_config.cluster: is required',
    ]);
  });
});

describe('RouteConfiguration', () => {
  const table = (virtual_hosts: object[]) => ({ name: 'outbound/default', virtual_hosts });

  it('reads a hash on the caller\'s address (sessionAffinity: ClientIP)', () => {
    const r = decode(
      TYPE_URL.route,
      table([
        {
          name: 'web.default.svc.cluster.local:80',
          domains: ['web:80'],
          routes: [{ match: { prefix: '/' }, route: { cluster: CLUSTER, hash_policy: [{ connection_properties: { source_ip: true } }] } }],
        },
      ]),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.resource.value.virtualHosts[0]?.routes[0]?.action).toMatchObject({ kind: 'forward', hashSourceIp: true });
  });

  it('maps matches and actions', () => {
    const r = decode(
      TYPE_URL.route,
      table([
        {
          name: 'web.default.svc.cluster.local:80',
          domains: ['Web.Default.svc.cluster.local:80', 'web:80', '*.example.com'],
          retry_policy: { retry_on: '5xx,reset', num_retries: { value: 2 } },
          routes: [
            {
              name: 'api',
              match: {
                prefix: '/api',
                case_sensitive: { value: false },
                headers: [
                  { name: 'X-Canary', present_match: true },
                  { name: 'x-env', string_match: { exact: 'dev' }, invert_match: true },
                  { name: 'x-user', string_match: { prefix: 'adm' } },
                  { name: 'x-any' },
                ],
              },
              route: {
                weighted_clusters: { clusters: [{ name: 'a', weight: { value: 90 } }, { name: 'b', weight: { value: 10 } }] },
                timeout: { seconds: 2, nanos: 500_000_000 },
                prefix_rewrite: '/v2',
                hash_policy: [{ header: { header_name: 'X-User' } }],
                retry_policy: { retry_on: 'connect-failure', per_try_timeout: { nanos: 250_000_000 } },
              },
            },
            { match: { path: '/health' }, direct_response: { status: 200, body: { inline_string: 'ok' } } },
            { match: { path_separated_prefix: '/v1' }, route: { cluster: CLUSTER, timeout: { seconds: 0 } } },
            { match: { prefix: '/' }, route: { cluster: CLUSTER } },
          ],
        },
      ]),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const vh = r.resource.value.virtualHosts[0]!;
    expect(vh.domains).toEqual(['web.default.svc.cluster.local:80', 'web:80', '*.example.com']);
    expect(vh.routes[0]).toEqual({
      name: 'api',
      path: { kind: 'prefix', value: '/api' },
      caseSensitive: false,
      headers: [
        { name: 'x-canary', present: true, invert: false },
        { name: 'x-env', exact: 'dev', invert: true },
        { name: 'x-user', prefix: 'adm', invert: false },
        { name: 'x-any', present: true, invert: false },
      ],
      action: {
        kind: 'forward',
        targets: [
          { cluster: 'a', weight: 90 },
          { cluster: 'b', weight: 10 },
        ],
        totalWeight: 100,
        timeoutMs: 2500,
        prefixRewrite: '/v2',
        hashHeader: 'x-user',
        retry: { retryOn: ['connect-failure'], numRetries: 1, perTryTimeoutMs: 250 },
      },
    });
    expect(vh.routes[1]).toMatchObject({ path: { kind: 'exact', value: '/health' }, action: { kind: 'direct', status: 200, body: 'ok' } });
    expect(vh.routes[2]?.path).toEqual({ kind: 'segment-prefix', value: '/v1' });
    expect(vh.routes[2]?.action).toEqual({ kind: 'forward', targets: [{ cluster: CLUSTER, weight: 1 }], totalWeight: 1, retry: { retryOn: ['5xx', 'reset'], numRetries: 2 } });
    // An unset timeout is Envoy's default of 15 s; an explicit 0s means none.
    expect(vh.routes[3]?.action).toMatchObject({ timeoutMs: 15_000 });
    expect(vh.routes[3]?.caseSensitive).toBe(true);
  });

  it('reports duplicate domains across virtual hosts', () => {
    const route = [{ match: { prefix: '/' }, route: { cluster: CLUSTER } }];
    const errors = errorsOf(
      TYPE_URL.route,
      table([
        { name: 'a', domains: ['web:80', 'web'], routes: route },
        { name: 'b', domains: ['api:80'], routes: route },
        { name: 'c', domains: ['WEB:80', 'x', 'x'], routes: route },
      ]),
    );
    expect(errors).toEqual([
      'RouteConfiguration "outbound/default": virtual_hosts[2].domains[0]: "web:80" duplicates virtual_hosts[0]',
      'RouteConfiguration "outbound/default": virtual_hosts[2].domains[2]: "x" is listed twice',
    ]);
  });

  it('reports every route error with its field path', () => {
    const errors = errorsOf(
      TYPE_URL.route,
      table([
        {
          name: '',
          domains: ['a*b', 'ok'],
          request_headers_to_add: [{ header: { key: 'x', value: 'y' } }],
          routes: [
            { route: { cluster: CLUSTER } },
            { match: { path: 'health' }, route: { cluster: '' } },
            { match: { path_separated_prefix: '/v1/' }, non_forwarding_action: {} },
            { match: { prefix: '/', headers: [{ name: 'x', string_match: { suffix: 'z', ignore_case: true } }] }, direct_response: { status: 99, body: { filename: '/etc/passwd' } } },
            {
              match: { prefix: '/' },
              route: {
                weighted_clusters: { clusters: [{ name: 'a', weight: { value: 0 } }] },
                host_rewrite_literal: 'h',
                hash_policy: [{}, { header: { header_name: 'x' } }],
                retry_policy: { retry_on: '5xx,bogus', retriable_status_codes: [503] },
              },
            },
            { match: { prefix: '/' } },
          ],
        },
      ]),
    );
    const p = 'RouteConfiguration "outbound/default": virtual_hosts[0]';
    expect(errors).toEqual([
      `${p}.name: is required`,
      `${p}.request_headers_to_add: is not supported`,
      `${p}.domains[0]: "a*b": a wildcard may only lead or end a domain`,
      `${p}.routes[0].match: is required`,
      `${p}.routes[1].match.path: must start with /`,
      `${p}.routes[1].route.cluster: must not be empty`,
      `${p}.routes[2].match.path_separated_prefix: must start with /, not end with /, and hold no ? or #`,
      `${p}.routes[2].non_forwarding_action: is not supported`,
      `${p}.routes[3].match.headers[0].string_match.ignore_case: is not supported`,
      `${p}.routes[3].match.headers[0].string_match: suffix is not supported (exact, prefix)`,
      `${p}.routes[3].direct_response.status: must be 200-599`,
      `${p}.routes[3].direct_response.body.filename: is not supported`,
      `${p}.routes[4].route.weighted_clusters: total weight must be greater than 0`,
      `${p}.routes[4].route.host_rewrite_literal: is not supported`,
      `${p}.routes[4].route.hash_policy: only one hash policy is supported`,
      `${p}.routes[4].route.hash_policy[0]: only header { header_name } and connection_properties { source_ip: true } are supported`,
      `${p}.routes[4].route.retry_policy.retry_on: "bogus" is not supported`,
      `${p}.routes[4].route.retry_policy.retriable_status_codes: is not supported (use 5xx, gateway-error or retriable-4xx)`,
      `${p}.routes[5]: one of route, direct_response is required`,
    ]);
  });
});

describe('responses', () => {
  it('rejects a wrong type URL, undecodable bytes and duplicate names', () => {
    const good = pack(TYPE_URL.cluster, cluster());
    const result = decodeResources(TYPE_URL.cluster, [
      { any: good },
      { any: good },
      { any: pack(TYPE_URL.listener, listener([])) },
      { any: { type_url: TYPE_URL.cluster, value: Buffer.from([0xff, 0xff]) } },
    ]);
    expect(result.resources).toHaveLength(1);
    expect(result.errors[0]).toBe(`Cluster "${CLUSTER}": appears twice in one response`);
    expect(result.errors[1]).toBe(`Cluster "": type_url "${TYPE_URL.listener}" does not match ${TYPE_URL.cluster}`);
    expect(result.errors[2]).toMatch(/^Cluster "": cannot decode: /);
  });

  it('uses the delta version and checks the delta name', () => {
    const r = decodeResource(TYPE_URL.cluster, pack(TYPE_URL.cluster, cluster()), 'v7', CLUSTER);
    expect(r.ok && r.resource.version).toBe('v7');
    const bad = decodeResource(TYPE_URL.cluster, pack(TYPE_URL.cluster, cluster()), 'v7', 'other');
    expect(!bad.ok && bad.errors).toEqual([`Cluster "${CLUSTER}": name: "${CLUSTER}" differs from the resource name "other"`]);
  });
});

describe('VirtualHost (VHDS) and a RouteConfiguration with vhds', () => {
  const route = [{ match: { prefix: '/' }, route: { cluster: CLUSTER } }];
  const vh = (message: object, name: string) => decodeResources(TYPE_URL.virtualHost, [{ any: pack(TYPE_URL.virtualHost, message), version: 'v1', name }]);

  it('maps a VirtualHost named <table>/<vhost name> into its table', () => {
    const r = vh({ name: 'web:80', domains: ['Web:80'], routes: route }, 'outbound/default/web:80');
    expect(r.errors).toEqual([]);
    expect(r.resources[0]).toMatchObject({ name: 'outbound/default/web:80', version: 'v1', value: { routeConfigName: 'outbound/default', vhost: { name: 'web:80', domains: ['web:80'] } } });
  });

  it('reports every error with the resource name and field path, and a name that is not <table>/<vhost name>', () => {
    const r = vh({ name: 'web:80', domains: ['a*b'], routes: [{ match: { prefix: '/' }, route: { cluster: '' } }], request_headers_to_add: [{ header: { key: 'x', value: 'y' } }] }, 'outbound/default/web:80');
    expect(r.errors).toEqual([
      'VirtualHost "outbound/default/web:80": request_headers_to_add: is not supported',
      'VirtualHost "outbound/default/web:80": domains[0]: "a*b": a wildcard may only lead or end a domain',
      'VirtualHost "outbound/default/web:80": routes[0].route.cluster: must not be empty',
    ]);
    expect(vh({ name: 'web:80', domains: ['web:80'], routes: route }, 'web:80').errors).toEqual([
      'VirtualHost "web:80": name: resource name "web:80" is not <route configuration name>/<virtual host name>',
    ]);
    expect(decodeResource(TYPE_URL.virtualHost, pack(TYPE_URL.virtualHost, { name: 'web:80', domains: ['web:80'], routes: route }))).toMatchObject({
      ok: false,
      errors: ['VirtualHost "web:80": name: a VirtualHost needs its delta resource name (<route configuration name>/<virtual host name>)'],
    });
  });

  it('marks a table whose virtual hosts come through VHDS from ADS, and rejects another source', () => {
    const ok = decode(TYPE_URL.route, { name: 'outbound/default', vhds: { config_source: ads } });
    expect(ok).toMatchObject({ ok: true, resource: { value: { name: 'outbound/default', virtualHosts: [], vhds: true } } });
    expect(errorsOf(TYPE_URL.route, { name: 'outbound/default', vhds: { config_source: { path: '/etc/vh.yaml' } } })).toEqual([
      'RouteConfiguration "outbound/default": vhds.config_source: only ads {} is supported',
    ]);
  });
});
