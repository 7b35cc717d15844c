// Tests the xDS client's resource store: EDS/RDS interest, warming, pruning, removal, and stable cluster identity.
import { describe, expect, it } from 'vitest';
import { TYPE_URL } from '../../../proto/index.ts';
import type { ClusterConfig, ListenerConfig, RouteTableConfig } from '../../../sidecar/xds/model.ts';
import type { DecodedCluster, DecodedEndpoints, DecodedResource } from '../../../sidecar/xds/resources.ts';
import { ResourceStore } from '../../../sidecar/xds/store.ts';

const eds = (name: string, version = 'c1'): DecodedResource<typeof TYPE_URL.cluster> => {
  const config: ClusterConfig = {
    name,
    version,
    kind: 'eds',
    lbPolicy: 'round-robin',
    connectTimeoutMs: 1000,
    protocol: 'http1',
    endpoints: [],
    endpointsVersion: '',
  };
  return { name, version, value: { config, edsServiceName: name } satisfies DecodedCluster };
};
const cla = (name: string, version = 'e1'): DecodedResource<typeof TYPE_URL.endpoint> => ({
  name,
  version,
  value: { name, version, endpoints: [{ address: '10.0.0.1', port: 80, weight: 1, health: 'healthy' }] } satisfies DecodedEndpoints,
});
const http = (route: string): DecodedResource<typeof TYPE_URL.listener> => {
  const value: ListenerConfig = { kind: 'http', name: 'out', version: 'l1', address: '0.0.0.0', port: 15001, routeConfigName: route };
  return { name: 'out', version: 'l1', value };
};
const tcp = (cluster: string): DecodedResource<typeof TYPE_URL.listener> => ({
  name: 'db',
  version: 'l2',
  value: { kind: 'tcp', name: 'db', version: 'l2', address: '10.96.0.9', port: 5432, cluster },
});
const table = (name: string, ...clusters: string[]): DecodedResource<typeof TYPE_URL.route> => {
  const value: RouteTableConfig = {
    name,
    version: 'r1',
    virtualHosts: [
      {
        name: 'vh',
        domains: ['*'],
        routes: clusters.map((c) => ({
          name: '',
          path: { kind: 'prefix', value: '/' },
          caseSensitive: true,
          headers: [],
          action: { kind: 'forward', targets: [{ cluster: c, weight: 1 }], totalWeight: 1 },
        })),
      },
    ],
  };
  return { name, version: 'r1', value };
};

describe('ResourceStore', () => {
  it('is warm only with CDS and LDS, every named RDS, and a CLA for every routed or TCP cluster', () => {
    const s = new ResourceStore();
    expect(s.warmth().missing).toEqual(['Cluster (no response yet)', 'Listener (no response yet)']);
    s.apply(TYPE_URL.cluster, [eds('a'), eds('b'), eds('unused')], [], true);
    s.apply(TYPE_URL.listener, [http('outbound/default'), tcp('b')], [], true);
    expect(s.edsNames()).toEqual(new Set(['a', 'b', 'unused']));
    expect(s.rdsNames()).toEqual(new Set(['outbound/default']));
    expect(s.warmth().missing).toEqual(['RouteConfiguration "outbound/default"', 'ClusterLoadAssignment "b"']);
    s.apply(TYPE_URL.route, [table('outbound/default', 'a', 'gone')], [], false);
    expect(s.warmth().missing).toEqual(['ClusterLoadAssignment "a"', 'ClusterLoadAssignment "b"', 'Cluster "gone"']);
    s.apply(TYPE_URL.endpoint, [cla('a'), cla('b')], [], false);
    expect(s.warmth().missing).toEqual(['Cluster "gone"']);
  });

  it('drops assignments and route tables nobody references, and empties a removed assignment', () => {
    const s = new ResourceStore();
    s.apply(TYPE_URL.cluster, [eds('a'), eds('b')], [], true);
    s.apply(TYPE_URL.endpoint, [cla('a'), cla('b')], [], false);
    s.apply(TYPE_URL.listener, [http('r')], [], true);
    s.apply(TYPE_URL.route, [table('r', 'a')], [], false);
    s.apply(TYPE_URL.cluster, [eds('a')], [], true);
    expect([...s.endpoints.keys()]).toEqual(['a']);
    s.apply(TYPE_URL.endpoint, [], ['a'], false);
    expect(s.endpoints.get('a')?.value.endpoints).toEqual([]);
    expect(s.warmth().warm).toBe(true);
    s.apply(TYPE_URL.listener, [], ['out'], false);
    expect(s.routes.size).toBe(0);
  });

  it('builds clusters with their endpoints and keeps unchanged ones identical', () => {
    const s = new ResourceStore();
    s.apply(TYPE_URL.cluster, [eds('a'), eds('b')], [], true);
    s.apply(TYPE_URL.endpoint, [cla('a')], [], false);
    const one = s.build({ x: '1' });
    expect(one.clusters.get('a')?.endpoints).toHaveLength(1);
    expect(one.clusters.get('a')?.endpointsVersion).toBe('e1');
    expect(one.clusters.get('b')?.endpoints).toEqual([]);
    expect(Object.isFrozen(one)).toBe(true);
    s.apply(TYPE_URL.endpoint, [cla('b', 'e2')], [], false);
    const two = s.build({ x: '2' });
    expect(two.clusters.get('a')).toBe(one.clusters.get('a'));
    expect(two.clusters.get('b')).not.toBe(one.clusters.get('b'));
    expect(two.versions).toEqual({ x: '2' });
    expect(s.versionsOf(TYPE_URL.endpoint)).toEqual({ a: 'e1', b: 'e2' });
  });
});

describe('ResourceStore with VHDS', () => {
  const vhdsTable = (name: string): DecodedResource<typeof TYPE_URL.route> => ({ name, version: 'r-vhds', value: { name, version: 'r-vhds', virtualHosts: [], vhds: true } });
  const vhost = (table: string, name: string, cluster: string, version = 'v1'): DecodedResource<typeof TYPE_URL.virtualHost> => {
    const inner = tableOf(cluster);
    return { name: `${table}/${name}`, version, value: { routeConfigName: table, vhost: { ...inner, name, domains: [`${name}:80`] } } };
  };
  const tableOf = (cluster: string) => (table('x', cluster).value.virtualHosts[0] as RouteTableConfig['virtualHosts'][number]);

  it('a vhds table is not warm (and not served) until the VirtualHost response has come; then it holds them by name', () => {
    const s = new ResourceStore();
    s.apply(TYPE_URL.cluster, [eds('c1'), eds('c2')], [], false);
    s.apply(TYPE_URL.endpoint, [cla('c1'), cla('c2')], [], false);
    s.apply(TYPE_URL.listener, [http('outbound/ns')], [], false);
    s.apply(TYPE_URL.route, [vhdsTable('outbound/ns')], [], false);
    expect(s.wantsVhds()).toBe(true);
    expect(s.warmth()).toEqual({ warm: false, missing: ['VirtualHost resources of "outbound/ns" (no VHDS response yet)'] });
    // Published anyway (the warming timeout): the table is left out, so the listener is not ready; never empty.
    expect(s.build({}).routes.has('outbound/ns')).toBe(false);

    s.apply(TYPE_URL.virtualHost, [vhost('outbound/ns', 'b', 'c2'), vhost('outbound/ns', 'a', 'c1'), vhost('other/ns', 'z', 'c1')], [], false);
    expect(s.warmth()).toEqual({ warm: true, missing: [] });
    const built = s.build({}).routes.get('outbound/ns');
    expect(built?.virtualHosts.map((v) => v.name)).toEqual(['a', 'b']);
    expect(built?.vhds).toBe(true);
    // The same object until the table or one of its VirtualHosts changes.
    expect(s.build({}).routes.get('outbound/ns')).toBe(built);
    s.apply(TYPE_URL.virtualHost, [vhost('other/ns', 'z', 'c2', 'v2')], [], false);
    expect(s.build({}).routes.get('outbound/ns')).toBe(built);
    s.apply(TYPE_URL.virtualHost, [], ['outbound/ns/a'], false);
    expect(s.build({}).routes.get('outbound/ns')?.virtualHosts.map((v) => v.name)).toEqual(['b']);
  });

  it('keeps a VirtualHost whose table it does not have yet, and uses it when the table comes', () => {
    const s = new ResourceStore();
    s.apply(TYPE_URL.cluster, [eds('c1')], [], false);
    s.apply(TYPE_URL.endpoint, [cla('c1')], [], false);
    s.apply(TYPE_URL.virtualHost, [vhost('outbound/ns', 'a', 'c1')], [], false);
    expect(s.vhosts.has('outbound/ns/a')).toBe(true);
    s.apply(TYPE_URL.listener, [http('outbound/ns')], [], false);
    expect(s.vhosts.has('outbound/ns/a')).toBe(true);
    s.apply(TYPE_URL.route, [vhdsTable('outbound/ns')], [], false);
    expect(s.warmth().warm).toBe(true);
    expect(s.build({}).routes.get('outbound/ns')?.virtualHosts.map((v) => v.name)).toEqual(['a']);
  });

  it('names a domain that another VirtualHost of the same table already has', () => {
    const s = new ResourceStore();
    s.apply(TYPE_URL.virtualHost, [vhost('outbound/ns', 'a', 'c1')], [], false);
    const dup = vhost('outbound/ns', 'b', 'c1');
    const clash = { ...dup, value: { ...dup.value, vhost: { ...dup.value.vhost, domains: ['b:80', 'a:80'] } } };
    expect(s.checkVirtualHosts([clash], [])).toEqual(['VirtualHost "outbound/ns/b": domains[1]: "a:80" duplicates VirtualHost "outbound/ns/a"']);
    // Not when the other one goes in the same update, nor in another table.
    expect(s.checkVirtualHosts([clash], ['outbound/ns/a'])).toEqual([]);
    expect(s.checkVirtualHosts([{ ...clash, name: 'other/b', value: { ...clash.value, routeConfigName: 'other' } }], [])).toEqual([]);
  });
});
