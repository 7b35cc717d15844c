// Tests the translation rules that keep real Envoy happy: percent weights, route hashing, ADS V3, stat prefixes, hand-off.
import { describe, expect, it } from 'vitest';
import type { HttpConnectionManager__Output, Listener__Output } from '../../../proto/index.ts';
import { pack, TYPE_URL, unpack } from '../../../proto/index.ts';
import { MAX_WEIGHTED_TARGETS, parseDurationMs, parseServiceAnnotations } from '../../../control-plane/translate/annotations.ts';
import { translateService } from '../../../control-plane/translate/build.ts';
import { buildProxylessListener, buildVirtualOutbound } from '../../../control-plane/translate/listener.ts';
import { dedupeDomains, normaliseWeights } from '../../../control-plane/translate/route.ts';
import { decodeResource } from '../../../sidecar/xds/resources.ts';
import { registryState, service } from './fixtures.ts';

function hcmOf(listener: Listener__Output): HttpConnectionManager__Output {
  const any = listener.api_listener?.api_listener ?? listener.filter_chains[0]?.filters[0]?.typed_config;
  return unpack<HttpConnectionManager__Output>(any as { type_url: string; value: Buffer });
}

describe('weighted clusters', () => {
  it.each([
    [[90, 10], [90, 10]],
    [[1, 1], [50, 50]],
    [[1, 2], [33, 67]],
    [[1, 1, 1], [34, 33, 33]],
    [[1, 1000], [1, 99]],
    [[5_000_000_000, 5_000_000_000], [50, 50]],
  ])('shares %j out as percentages %j', (weights, percent) => {
    const out = normaliseWeights(weights);
    expect(out).toEqual(percent);
    expect(out.reduce((a, b) => a + b, 0)).toBe(100);
  });

  it('refuses more weighted targets than there are percent points', () => {
    const weighted = Array.from({ length: MAX_WEIGHTED_TARGETS + 1 }, () => ({ service: 'a', port: 80 }));
    const { errors } = parseServiceAnnotations({ name: 'web', namespace: 'shop', annotations: { 'skein.dev/routes': JSON.stringify([{ weighted }]) } }, 'Service shop/web');
    expect(errors[0]?.message).toMatch(/weighted: has 101 targets; at most 100/);
  });
});

describe('route hashing for ring hash', () => {
  const cart = service('shop', 'cart', { clusterIP: '10.96.0.30', ports: [{ name: 'http', port: 80 }] }, {
    'skein.dev/lb-policy': 'ring-hash',
    'skein.dev/hash-header': 'x-session',
  });

  it("hashes a route into another Service on that Service's header", () => {
    const front = service('shop', 'front', { clusterIP: '10.96.0.31', ports: [{ name: 'http', port: 80 }] }, {
      'skein.dev/routes': '- prefix: /cart\n  cluster: cart:80\n',
    });
    const res = translateService('shop/front', registryState([front, cart]));
    const [toCart, own] = res.virtualHosts[0]?.remote.routes ?? [];
    expect(toCart?.route?.hash_policy).toEqual([{ header: { header_name: 'x-session' } }]);
    expect(own?.route?.hash_policy).toBeUndefined();
  });

  it('reports ring-hash without a hash header (it would spread requests at random)', () => {
    const bare = service('shop', 'cart', { clusterIP: '10.96.0.30', ports: [{ name: 'http', port: 80 }] }, { 'skein.dev/lb-policy': 'ring-hash' });
    const res = translateService('shop/cart', registryState([bare]));
    expect(res.problems.map((p) => p.message)).toEqual([expect.stringMatching(/ring-hash without "skein.dev\/hash-header" hashes nothing/)]);
    expect(res.clusters.envoy[0]?.lb_policy).toBe('RING_HASH');
  });
});

describe('listeners', () => {
  it('hands captured connections to the TCP listeners by original destination', () => {
    const l = unpack<Listener__Output>(pack(TYPE_URL.listener, buildVirtualOutbound('shop')));
    expect(l.use_original_dst?.value).toBe(true);
  });

  it('gives proxyless api_listeners a stat_prefix and an ADS V3 route source', () => {
    const l = unpack<Listener__Output>(pack(TYPE_URL.listener, buildProxylessListener('web.shop.svc.cluster.local:80')));
    const hcm = hcmOf(l);
    expect(hcm.stat_prefix).toBe('web.shop.svc.cluster.local:80');
    expect(hcm.rds?.config_source).toMatchObject({ ads: {}, resource_api_version: 'V3' });
  });
});

describe('limits Envoy enforces', () => {
  it('drops a vhost whose every domain another vhost already holds', () => {
    const { vhosts, duplicates } = dedupeDomains([
      { name: 'a', domains: ['x', 'y'] },
      { name: 'b', domains: ['y', 'x'] },
    ]);
    expect(vhosts.map((v) => v.name)).toEqual(['a']);
    expect(duplicates).toHaveLength(2);
  });

  it('refuses durations beyond google.protobuf.Duration', () => {
    expect(parseDurationMs('87600000h')).toBe(315_360_000_000_000);
    expect(parseDurationMs('87700000h')).toBeUndefined();
  });
});

describe('upstream HTTP/2 protocol options', () => {
  it("Skein's sidecar takes an http2 cluster carrying typed_extension_protocol_options and still speaks HTTP/2 to it", () => {
    const web = service('shop', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9000 }] });
    const [http, grpc] = translateService('shop/web', registryState([web])).clusters.envoy;
    expect(Object.keys(grpc?.typed_extension_protocol_options ?? {})).toHaveLength(1);
    const decoded = [http, grpc].map((c) => decodeResource(TYPE_URL.cluster, pack(TYPE_URL.cluster, c as object)));
    expect(decoded.map((d) => (d.ok ? d.resource.value.config.protocol : d.errors.join('; ')))).toEqual(['http1', 'http2']);
  });
});
