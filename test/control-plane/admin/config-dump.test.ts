// Tests /debug/config_dump's JSON: Anys decoded with "@type" as Envoy and istiod print them, durations and Structs readable.
import { afterAll, describe, expect, it } from 'vitest';
import { anyToJson, configDump } from '../../../control-plane/admin/config-dump.ts';
import { createSnapshotCache } from '../../../control-plane/cache/index.ts';
import type { Logger } from '../../../control-plane/log.ts';
import { EXTENSION_TYPE_URL, TYPE_URL } from '../../../proto/index.ts';
import { pod, registryState, service, slice } from '../translate/fixtures.ts';

const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {}, debugEnabled: false };
const state = registryState(
  [
    service('shop', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'tcp-db', port: 5432 }] }, { 'skein.dev/connect-timeout': '250ms' }),
  ],
  [slice('shop', 'web', 'web-a', [{ name: 'http', port: 8080 }, { name: 'tcp-db', port: 5432 }], [{ ip: '10.1.0.5', pod: 'web-0' }])],
  [pod('shop', 'web-0', 'web', { 'skein.dev/inbound-port': '15006' })],
);
const cache = createSnapshotCache({ state: () => state, subscribe: () => () => {} }, { log: quiet });
afterAll(() => cache.close());

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;
function dump(query: string): J {
  const result = configDump(cache.current(), new URLSearchParams(query));
  if (!result.ok) throw new Error(result.error);
  return result.dump;
}

describe('config_dump', () => {
  it('lists the VirtualHosts VHDS clients get, in envoy scopes only', () => {
    const vhds = dump('scope=envoy/shop&type=VHDS').types.VHDS.resources as { name: string; resource: J }[];
    expect(vhds.map((r) => r.name)).toEqual(['outbound/shop/web.shop.svc.cluster.local:80']);
    expect(vhds[0]?.resource['@type']).toBe(TYPE_URL.virtualHost);
    expect(vhds[0]?.resource.domains).toContain('web');
    expect(Object.keys(dump('scope=envoy/shop').types)).toEqual(['CDS', 'EDS', 'LDS', 'RDS', 'VHDS']);
    expect(Object.keys(dump('scope=proxyless').types)).toEqual(['CDS', 'EDS', 'LDS', 'RDS']);
  });

  it('decodes the listeners filter configs instead of printing bytes', () => {
    const lds = dump('scope=envoy/shop&type=LDS').types.LDS.resources as { name: string; resource: J }[];
    const outbound = lds.find((r) => r.name === 'virtualOutbound')?.resource;
    expect(outbound['@type']).toBe(TYPE_URL.listener);
    expect(outbound.use_original_dst).toBe(true);
    const hcm = outbound.filter_chains[0].filters[0].typed_config;
    expect(hcm).toMatchObject({
      '@type': EXTENSION_TYPE_URL.httpConnectionManager,
      stat_prefix: 'outbound',
      codec_type: 'AUTO',
      rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: 'outbound/shop' },
      request_headers_timeout: '10s',
      max_request_headers_kb: 60,
    });
    expect(hcm.http_filters).toEqual([{ name: 'envoy.filters.http.router', typed_config: { '@type': EXTENSION_TYPE_URL.router } }]);
    const tcp = lds.find((r) => r.name === '10.96.0.10_5432')?.resource;
    expect(tcp.bind_to_port).toBe(false);
    expect(tcp.filter_chains[0].filters[0].typed_config).toEqual({
      '@type': EXTENSION_TYPE_URL.tcpProxy,
      stat_prefix: 'outbound|5432||web.shop.svc.cluster.local',
      cluster: 'outbound|5432||web.shop.svc.cluster.local',
    });
    expect(JSON.stringify(lds)).not.toMatch(/"type":"Buffer"|"data":\[/);
  });

  it('prints durations, enums and Struct metadata as plain JSON', () => {
    const cds = dump('scope=envoy/shop&type=cds&name=outbound|80||web.shop.svc.cluster.local').types.CDS.resources;
    expect(cds).toHaveLength(1);
    const c = cds[0].resource;
    expect(c).toMatchObject({ connect_timeout: '0.250s', type: 'EDS', lb_policy: 'LEAST_REQUEST' });
    expect(c.metadata.filter_metadata.skein).toMatchObject({ protocol: 'http', service: 'shop/web', port: 80, mtls_mode: 'STRICT', identities: ['spiffe://cluster.local/ns/shop/sa/web'] });
    const cla = dump('scope=envoy/shop&type=EDS&name=outbound|80||web.shop.svc.cluster.local').types.EDS.resources[0].resource;
    expect(cla.endpoints[0].lb_endpoints[0]).toMatchObject({
      endpoint: { address: { socket_address: { address: '10.1.0.5', port_value: 8080 } } },
      health_status: 'HEALTHY',
      metadata: { filter_metadata: { skein: { pod: 'web-0', inbound_port: 15006, service_account: 'web' } } },
    });
  });

  it('keeps the bytes of a type it does not know, in base64', () => {
    expect(anyToJson('type.googleapis.com/example.Nope', Buffer.from([1, 2]))).toEqual({ '@type': 'type.googleapis.com/example.Nope', value: 'AQI=' });
  });
});
