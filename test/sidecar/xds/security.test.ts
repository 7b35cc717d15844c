// Tests decoding of a cluster's security metadata (identities, mtls_mode, authz) from real packed Cluster resources.
import { describe, expect, it } from 'vitest';
import { pack, TYPE_URL } from '../../../proto/index.ts';
import { decodeResource } from '../../../sidecar/xds/resources.ts';

const NAME = 'outbound|80||kv.demo.svc.cluster.local';
const str = (s: string) => ({ stringValue: s });
const list = (...v: object[]) => ({ listValue: { values: v } });
const obj = (fields: Record<string, object>) => ({ structValue: { fields } });

function decode(fields: Record<string, object>) {
  return decodeResource(
    TYPE_URL.cluster,
    pack(TYPE_URL.cluster, {
      name: NAME,
      type: 'EDS',
      eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: NAME },
      lb_policy: 'LEAST_REQUEST',
      metadata: { filter_metadata: { skein: { fields: { protocol: str('http'), service: str('demo/kv'), ...fields } } } },
    }),
  );
}

describe('cluster security metadata', () => {
  it('reads identities, mtls_mode and authz (Struct form)', () => {
    const r = decode({
      identities: list(str('spiffe://cluster.local/ns/demo/sa/kv'), str('spiffe://cluster.local/ns/demo/sa/kv')),
      mtls_mode: str('PERMISSIVE'),
      authz: obj({
        deny: list(obj({ to: list(obj({ methods: list(str('delete')) })) })),
        allow: list(obj({ from: list(obj({ principals: list(str('spiffe://cluster.local/ns/demo/sa/app')), namespaces: list(str('demo')) })) })),
      }),
    });
    if (!r.ok) throw new Error(r.errors.join('; '));
    const c = (r.resource.value as unknown as { config: Record<string, unknown> }).config;
    expect(c).toMatchObject({
      service: 'demo/kv',
      identities: ['spiffe://cluster.local/ns/demo/sa/kv'],
      mtlsMode: 'PERMISSIVE',
      authz: {
        deny: [{ from: [], to: [{ methods: ['DELETE'] }] }],
        allow: [{ from: [{ principals: ['spiffe://cluster.local/ns/demo/sa/app'], namespaces: ['demo'] }], to: [] }],
      },
    });
  });

  it('accepts authz as a JSON string; absent fields stay absent (STRICT, no policy)', () => {
    const r = decode({ authz: str(JSON.stringify({ deny: [] })) });
    if (!r.ok) throw new Error(r.errors.join('; '));
    const c = (r.resource.value as unknown as { config: Record<string, unknown> }).config;
    expect(c['authz']).toEqual({ deny: [] });
    expect(c['mtlsMode']).toBeUndefined();
    expect(c['identities']).toBeUndefined();
  });

  it('reports every problem with its field path', () => {
    const r = decode({
      identities: list(str('web')),
      mtls_mode: str('SOMETIMES'),
      authz: obj({ allow: list(obj({ from: list(obj({ principals: str('x') })) })) }),
    });
    expect(r.ok).toBe(false);
    const errors = (r as { errors: readonly string[] }).errors.join('\n');
    expect(errors).toContain('metadata.filter_metadata.skein.identities: "web" is not a spiffe:// ID');
    expect(errors).toContain('metadata.filter_metadata.skein.mtls_mode: "SOMETIMES" is not STRICT or PERMISSIVE');
    expect(errors).toContain('metadata.filter_metadata.skein.authz.allow[0].from[0].principals: must be a list of strings');
  });
});
