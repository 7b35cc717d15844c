// Tests EDS translation against Kubernetes endpoint semantics, decoding the packed CLA back to compare fields.
import { describe, expect, it } from 'vitest';
import type { ClusterLoadAssignment__Output } from '../../../proto/index.ts';
import { pack, TYPE_URL, unpack } from '../../../proto/index.ts';
import { translateService } from '../../../control-plane/translate/build.ts';
import { endpointHealth } from '../../../control-plane/translate/endpoints.ts';
import { structValue } from '../../../control-plane/translate/values.ts';
import { pod, registryState, service, slice } from './fixtures.ts';

const WEB = 'outbound|80||web.shop.svc.cluster.local';

function decodedCla(state: ReturnType<typeof registryState>, cluster = WEB, key: `${string}/${string}` = 'shop/web') {
  const res = translateService(key, state);
  const cla = res.endpoints.find((e) => e.cluster_name === cluster);
  expect(cla, `CLA ${cluster}`).toBeDefined();
  return unpack<ClusterLoadAssignment__Output>(pack(TYPE_URL.endpoint, cla as object));
}

function flat(cla: ClusterLoadAssignment__Output) {
  return cla.endpoints.flatMap((l) =>
    l.lb_endpoints.map((e) => ({
      zone: l.locality?.zone,
      address: `${e.endpoint?.address?.socket_address?.address}:${e.endpoint?.address?.socket_address?.port_value}`,
      health: e.health_status,
    })),
  );
}

const web = (extra: Partial<Parameters<typeof service>[2]> = {}) =>
  service('shop', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 'web' }], ...extra });

describe('endpoints', () => {
  it.each([
    [{ ready: true }, false, 'HEALTHY'],
    [{}, false, 'HEALTHY'],
    [undefined, false, 'HEALTHY'],
    [{ ready: false, serving: true, terminating: true }, false, 'DRAINING'],
    [{ ready: false, serving: false, terminating: true }, false, 'UNHEALTHY'],
    [{ ready: false, serving: true, terminating: false }, false, 'UNHEALTHY'],
    [{ ready: false }, false, 'UNHEALTHY'],
    [{ ready: false }, true, 'HEALTHY'],
  ] as const)('conditions %j (publishNotReady %s) are %s', (conditions, publishNotReady, expected) => {
    expect(endpointHealth(conditions, publishNotReady)).toBe(expected);
  });

  it('maps ready, terminating and not-ready endpoints to Envoy health', () => {
    const state = registryState(
      [web()],
      [
        slice('shop', 'web', 'web-1', [{ name: 'http', port: 8080 }], [
          { ip: '10.1.0.1', ready: true },
          { ip: '10.1.0.2', ready: false, serving: true, terminating: true },
          { ip: '10.1.0.3', ready: false, serving: false, terminating: true },
          { ip: '10.1.0.4', ready: false },
        ]),
      ],
    );
    expect(flat(decodedCla(state)).map((e) => [e.address, e.health])).toEqual([
      ['10.1.0.1:8080', 'HEALTHY'],
      ['10.1.0.2:8080', 'DRAINING'],
      ['10.1.0.3:8080', 'UNHEALTHY'],
      ['10.1.0.4:8080', 'UNHEALTHY'],
    ]);
  });

  it('publishes not-ready endpoints as healthy when the Service asks for it', () => {
    const state = registryState(
      [web({ publishNotReadyAddresses: true })],
      [slice('shop', 'web', 'web-1', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.4', ready: false }])],
    );
    expect(flat(decodedCla(state))[0]?.health).toBe('HEALTHY');
  });

  it('resolves a named targetPort per slice (pods of one Service may number it differently)', () => {
    const state = registryState(
      [web()],
      [
        slice('shop', 'web', 'web-old', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1' }]),
        slice('shop', 'web', 'web-new', [{ name: 'http', port: 9090 }], [{ ip: '10.1.0.2' }]),
      ],
    );
    expect(flat(decodedCla(state)).map((e) => e.address)).toEqual(['10.1.0.1:8080', '10.1.0.2:9090']);
  });

  it('merges several slices, deduplicating the same address and port and keeping its best state', () => {
    const state = registryState(
      [web()],
      [
        slice('shop', 'web', 'web-b', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.10' }, { ip: '10.1.0.2', ready: false }]),
        slice('shop', 'web', 'web-a', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.2', ready: true }, { ip: '10.1.0.9' }]),
      ],
    );
    expect(flat(decodedCla(state)).map((e) => [e.address, e.health])).toEqual([
      ['10.1.0.2:8080', 'HEALTHY'],
      ['10.1.0.9:8080', 'HEALTHY'],
      ['10.1.0.10:8080', 'HEALTHY'],
    ]);
  });

  it('takes a dual-stack Service\'s endpoints from its primary family only (each Pod once, as kube-proxy per family)', () => {
    const slices = [
      slice('shop', 'web', 'web-v4', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1' }, { ip: '10.1.0.2' }]),
      slice('shop', 'web', 'web-v6', [{ name: 'http', port: 8080 }], [{ ip: 'fd00::1' }, { ip: 'fd00::2' }], 'IPv6'),
    ];
    const v4 = flat(decodedCla(registryState([web({ ipFamilies: ['IPv4', 'IPv6'] })], slices))).map((e) => e.address);
    expect(v4).toEqual(['10.1.0.1:8080', '10.1.0.2:8080']);
    const v6 = flat(decodedCla(registryState([web({ clusterIP: 'fd00:10:96::a', ipFamilies: ['IPv6', 'IPv4'] })], slices))).map((e) => e.address);
    expect(v6).toEqual(['fd00::1:8080', 'fd00::2:8080']);
    // Without ipFamilies: the clusterIP's family; headless: IPv4 when there are IPv4 slices.
    expect(flat(decodedCla(registryState([web()], slices))).length).toBe(2);
    expect(flat(decodedCla(registryState([web({ clusterIP: 'None' })], slices))).map((e) => e.address)).toEqual(['10.1.0.1:8080', '10.1.0.2:8080']);
    expect(flat(decodedCla(registryState([web({ clusterIP: 'None' })], [slices[1]!]))).length).toBe(2);
  });

  it('writes IPv6 endpoints in one canonical form, so one address spelt two ways in two slices is one endpoint', () => {
    const slices = [
      slice('shop', 'web', 'web-a', [{ name: 'http', port: 8080 }], [{ ip: '2001:DB8::1' }], 'IPv6'),
      slice('shop', 'web', 'web-b', [{ name: 'http', port: 8080 }], [{ ip: '2001:db8:0::1' }], 'IPv6'),
    ];
    const eps = flat(decodedCla(registryState([web({ clusterIP: 'fd00:10:96::a', ipFamilies: ['IPv6'] })], slices))).map((e) => e.address);
    expect(eps).toEqual(['2001:db8::1:8080']);
  });

  it('keeps the Pod a duplicate endpoint named when its better-state copy in another slice names none', () => {
    const state = registryState(
      [web()],
      [
        slice('shop', 'web', 'web-a', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1', pod: 'web-1', ready: false }]),
        slice('shop', 'web', 'web-b', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1', ready: true }]),
      ],
      [pod('shop', 'web-1', 'web-sa')],
    );
    const eps = decodedCla(state).endpoints[0]?.lb_endpoints ?? [];
    expect(eps.length).toBe(1);
    expect(eps[0]?.health_status).toBe('HEALTHY');
    expect(structValue(eps[0]?.metadata?.filter_metadata?.skein, 'pod')).toBe('web-1');
  });

  it('gives equal bytes for equal input regardless of slice and endpoint order', () => {
    const a = slice('shop', 'web', 'a', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.3', zone: 'z2' }, { ip: '10.1.0.1', zone: 'z1' }]);
    const b = slice('shop', 'web', 'b', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.2', zone: 'z1' }]);
    const one = translateService('shop/web', registryState([web()], [a, b])).endpoints[0];
    const two = translateService('shop/web', registryState([web()], [b, a])).endpoints[0];
    expect(pack(TYPE_URL.endpoint, one as object).value.equals(pack(TYPE_URL.endpoint, two as object).value)).toBe(true);
  });

  it('groups endpoints by zone, priority 0, each zone weighted by its endpoints taking traffic (at least 1)', () => {
    const state = registryState(
      [web()],
      [
        slice('shop', 'web', 'w', [{ name: 'http', port: 8080 }], [
          { ip: '10.1.0.1', zone: 'b' },
          { ip: '10.1.0.2' },
          { ip: '10.1.0.3', zone: 'a' },
          { ip: '10.1.0.4', zone: 'b' },
          { ip: '10.1.0.5', zone: 'b', ready: false },
          { ip: '10.1.0.6', zone: 'c', ready: false },
          { ip: '10.1.0.7', zone: 'c', ready: false, serving: true, terminating: true },
        ]),
      ],
    );
    const cla = decodedCla(state);
    expect(cla.cluster_name).toBe(WEB);
    expect(cla.endpoints.map((l) => [l.locality?.zone, l.load_balancing_weight?.value, l.priority, l.lb_endpoints.length])).toEqual([
      ['', 1, 0, 1],
      ['a', 1, 0, 1],
      ['b', 2, 0, 3],
      ['c', 1, 0, 2],
    ]);
  });

  it('sends serving-terminating endpoints as HEALTHY when no endpoint is ready (kube-proxy’s fallback)', () => {
    const state = registryState(
      [web()],
      [
        slice('shop', 'web', 'w', [{ name: 'http', port: 8080 }], [
          { ip: '10.1.0.1', zone: 'a', ready: false, serving: true, terminating: true },
          { ip: '10.1.0.2', zone: 'b', ready: false, serving: true, terminating: true },
          { ip: '10.1.0.3', zone: 'b', ready: false, serving: false, terminating: true },
          { ip: '10.1.0.4', zone: 'b', ready: false },
        ]),
      ],
    );
    const cla = decodedCla(state);
    expect(flat(cla).map((e) => [e.address, e.health])).toEqual([
      ['10.1.0.1:8080', 'HEALTHY'],
      ['10.1.0.2:8080', 'HEALTHY'],
      ['10.1.0.3:8080', 'UNHEALTHY'],
      ['10.1.0.4:8080', 'UNHEALTHY'],
    ]);
    expect(cla.endpoints.map((l) => l.load_balancing_weight?.value)).toEqual([1, 1]);
  });

  it('adds pod, namespace, service account and inbound port metadata where known', () => {
    const state = registryState(
      [web()],
      [slice('shop', 'web', 'w', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1', pod: 'web-1' }, { ip: '10.1.0.2', pod: 'web-2' }, { ip: '10.1.0.3' }])],
      [pod('shop', 'web-1', 'web-sa', { 'skein.dev/inbound-port': '15006' }), pod('shop', 'web-2')],
    );
    const eps = decodedCla(state).endpoints[0]?.lb_endpoints ?? [];
    const md = eps.map((e) => e.metadata?.filter_metadata?.skein);
    expect(['pod', 'namespace', 'service_account', 'inbound_port'].map((k) => structValue(md[0], k))).toEqual(['web-1', 'shop', 'web-sa', 15006]);
    expect(['pod', 'namespace', 'service_account', 'inbound_port'].map((k) => structValue(md[1], k))).toEqual(['web-2', 'shop', undefined, undefined]);
    expect(eps[2]?.metadata).toBeNull();
  });

  it('in Kubernetes mode, holds back an endpoint whose Pod is not known yet (callers could not tell it has a sidecar)', () => {
    const state = registryState(
      [web()],
      [slice('shop', 'web', 'w', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1', pod: 'web-1' }, { ip: '10.1.0.2', pod: 'web-2' }, { ip: '10.1.0.3' }])],
      [pod('shop', 'web-1', 'web-sa', { 'skein.dev/inbound-port': '15006' })],
    );
    const health = (hold: boolean) => {
      const cla = translateService('shop/web', state, { holdEndpointsWithoutPod: hold }).endpoints.find((e) => e.cluster_name === WEB);
      return flat(unpack<ClusterLoadAssignment__Output>(pack(TYPE_URL.endpoint, cla as object))).map((e) => `${e.address} ${e.health}`);
    };
    // web-2 names a Pod the registry lacks; 10.1.0.3 names none (outside the mesh, as a Service without a selector).
    expect(health(true)).toEqual(['10.1.0.1:8080 HEALTHY', '10.1.0.2:8080 UNHEALTHY', '10.1.0.3:8080 HEALTHY']);
    expect(health(false)).toEqual(['10.1.0.1:8080 HEALTHY', '10.1.0.2:8080 HEALTHY', '10.1.0.3:8080 HEALTHY']);
  });

  it('reports a bad inbound-port annotation and keeps the endpoint', () => {
    const state = registryState(
      [web()],
      [slice('shop', 'web', 'w', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1', pod: 'web-1' }])],
      [pod('shop', 'web-1', 'sa', { 'skein.dev/inbound-port': 'zero' })],
    );
    const res = translateService('shop/web', state);
    expect(res.endpoints[0]?.endpoints?.[0]?.lb_endpoints).toHaveLength(1);
    expect(res.problems.map((p) => p.message)).toEqual([expect.stringContaining('Pod shop/web-1 metadata.annotations["skein.dev/inbound-port"]')]);
  });

  it('carries skein.dev/proxy-protocol for Pods with a sidecar (default inside-tls left out) and reports a bad value', () => {
    const state = registryState(
      [web()],
      [slice('shop', 'web', 'w', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.1', pod: 'web-1' }, { ip: '10.1.0.2', pod: 'web-2' }, { ip: '10.1.0.3', pod: 'web-3' }])],
      [
        pod('shop', 'web-1', 'sa', { 'skein.dev/inbound-port': '15006', 'skein.dev/proxy-protocol': 'outside-tls' }),
        pod('shop', 'web-2', 'sa', { 'skein.dev/inbound-port': '15006', 'skein.dev/proxy-protocol': 'inside-tls' }),
        pod('shop', 'web-3', 'sa', { 'skein.dev/inbound-port': '15006', 'skein.dev/proxy-protocol': 'before' }),
      ],
    );
    const md = (decodedCla(state).endpoints[0]?.lb_endpoints ?? []).map((e) => structValue(e.metadata?.filter_metadata?.skein, 'proxy_protocol'));
    expect(md).toEqual(['outside-tls', undefined, undefined]);
    const res = translateService('shop/web', state);
    expect(res.problems.map((p) => p.message)).toEqual([
      expect.stringContaining('Pod shop/web-3 metadata.annotations["skein.dev/proxy-protocol"]: "before" must be one of inside-tls, outside-tls, none'),
    ]);
  });

  it('matches multi-port slices by port name and skips slices without the port or with FQDN addresses', () => {
    const svc = service('shop', 'api', {
      clusterIP: '10.96.0.11',
      ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'grpc', port: 9000, targetPort: 'grpc' }],
    });
    const state = registryState(
      [svc],
      [
        slice('shop', 'api', 'a', [{ name: 'http', port: 8080 }, { name: 'grpc', port: 9001 }], [{ ip: '10.1.0.1' }]),
        slice('shop', 'api', 'b', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.2' }]),
        slice('shop', 'api', 'c', [{ name: 'grpc', port: 9001 }], [{ ip: 'pod.example.com' }], 'FQDN'),
      ],
    );
    const http = flat(decodedCla(state, 'outbound|80||api.shop.svc.cluster.local', 'shop/api'));
    const grpc = flat(decodedCla(state, 'outbound|9000||api.shop.svc.cluster.local', 'shop/api'));
    expect(http.map((e) => e.address)).toEqual(['10.1.0.1:8080', '10.1.0.2:8080']);
    expect(grpc.map((e) => e.address)).toEqual(['10.1.0.1:9001']);
  });

  it('uses hand-made slices of a selector-less Service (unnamed port)', () => {
    const svc = service('shop', 'legacy', { clusterIP: '10.96.0.12', ports: [{ port: 80, targetPort: 8080 }] });
    const state = registryState([svc], [slice('shop', 'legacy', 'legacy-manual', [{ port: 8081 }], [{ ip: '192.168.1.5' }])]);
    const cla = decodedCla(state, 'outbound|80||legacy.shop.svc.cluster.local', 'shop/legacy');
    expect(flat(cla)).toEqual([{ zone: '', address: '192.168.1.5:8081', health: 'HEALTHY' }]);
  });

  it('publishes an empty CLA when a Service has no endpoints yet', () => {
    const cla = decodedCla(registryState([web()]));
    expect(cla).toMatchObject({ cluster_name: WEB, endpoints: [] });
  });

  it('gives headless Services EDS clusters of the pod IPs', () => {
    const svc = service('shop', 'db', { clusterIP: 'None', ports: [{ name: 'tcp-pg', port: 5432 }] });
    const state = registryState([svc], [slice('shop', 'db', 'db-1', [{ name: 'tcp-pg', port: 5432 }], [{ ip: '10.1.0.7' }, { ip: '10.1.0.8' }])]);
    const res = translateService('shop/db', state);
    expect(res.clusters.envoy[0]).toMatchObject({ type: 'EDS' });
    expect(flat(decodedCla(state, 'outbound|5432||db.shop.svc.cluster.local', 'shop/db')).map((e) => e.address)).toEqual([
      '10.1.0.7:5432',
      '10.1.0.8:5432',
    ]);
    expect(res.tcpListeners).toEqual([]);
  });

  it("addresses a headless Service's named Pods one by one (web-0.web.shop…), HTTP ports only", () => {
    const svc = service('shop', 'db', { clusterIP: 'None', ports: [{ name: 'http', port: 8008 }, { name: 'tcp-pg', port: 5432 }] });
    const ports = [{ name: 'http', port: 8008 }, { name: 'tcp-pg', port: 5432 }];
    const endpointsOf = [{ ip: '10.1.0.7', hostname: 'db-0' }, { ip: '10.1.0.8', hostname: 'db-1' }, { ip: '10.1.0.9', hostname: 'Not A Label' }];
    const state = registryState([svc], [slice('shop', 'db', 'db-1', ports, endpointsOf)]);
    const res = translateService('shop/db', state);
    expect(res.clusters.envoy.map((c) => c.name)).toEqual([
      'outbound|8008||db.shop.svc.cluster.local',
      'outbound|8008||db-0.db.shop.svc.cluster.local',
      'outbound|8008||db-1.db.shop.svc.cluster.local',
      'outbound|5432||db.shop.svc.cluster.local',
    ]);
    expect(res.clusters.proxyless.map((c) => c.name)).toEqual(res.clusters.envoy.map((c) => c.name));
    const pod0 = flat(decodedCla(state, 'outbound|8008||db-0.db.shop.svc.cluster.local', 'shop/db')).map((e) => e.address);
    expect(pod0).toEqual(['10.1.0.7:8008']);
    const vh = res.virtualHosts.find((v) => v.name === 'db-0.db.shop.svc.cluster.local:8008');
    expect(vh?.remote.domains).toEqual(expect.arrayContaining(['db-0.db.shop.svc.cluster.local:8008', 'db-0.db.shop:8008', 'db-0.db.shop.svc:8008']));
    expect(vh?.local.domains).toContain('db-0.db:8008');
    // A normal (virtual IP) Service gets no per-Pod names even when its endpoints have hostnames.
    const vip = registryState([service('shop', 'db', { clusterIP: '10.96.0.9', ports: [{ name: 'http', port: 8008 }] })], [slice('shop', 'db', 'db-1', [{ name: 'http', port: 8008 }], endpointsOf)]);
    expect(translateService('shop/db', vip).clusters.envoy.map((c) => c.name)).toEqual(['outbound|8008||db.shop.svc.cluster.local']);
  });
});
