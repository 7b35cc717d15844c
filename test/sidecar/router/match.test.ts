import { describe, it, expect } from 'vitest';
import { RouteTable, findRoute, pickCluster, splitAbsoluteUrl } from '../../../sidecar/router/index.ts';
import type { RouteConfig, RouteTableConfig, VirtualHostConfig } from '../../../sidecar/xds/model.ts';

function fwd(name: string, cluster: string, path: RouteConfig['path'] = { kind: 'prefix', value: '/' }, extra: Partial<RouteConfig> = {}): RouteConfig {
  return {
    name,
    path,
    caseSensitive: true,
    headers: [],
    action: { kind: 'forward', targets: [{ cluster, weight: 1 }], totalWeight: 1 },
    ...extra,
  };
}

/** What the control plane emits for Service web (ns default, ClusterIP 10.96.0.10, ports 80 and 9090) seen from ns default. */
function serviceVhost(name: string, ns: string, ip: string, port: number, defaultPort: boolean, local: boolean): VirtualHostConfig {
  const fqdn = `${name}.${ns}.svc.cluster.local`;
  const names = [fqdn, `${name}.${ns}.svc`, `${name}.${ns}`, ip, ...(local ? [name] : [])];
  const domains = names.map((n) => `${n}:${port}`);
  if (defaultPort) domains.push(...names);
  return { name: `${fqdn}:${port}`, domains, routes: [fwd('default', `outbound|${port}||${fqdn}`)] };
}

const table: RouteTableConfig = {
  name: 'outbound/default',
  version: '1',
  virtualHosts: [
    serviceVhost('web', 'default', '10.96.0.10', 80, true, true),
    serviceVhost('web', 'default', '10.96.0.10', 9090, false, true),
    serviceVhost('api', 'other', '10.96.0.20', 8080, true, false),
    { name: 'wild-suffix', domains: ['*.example.com'], routes: [fwd('w', 'suffix')] },
    { name: 'wild-prefix', domains: ['example.*'], routes: [fwd('w', 'prefix')] },
  ],
};

describe('virtual host matching', () => {
  const rt = new RouteTable(table);
  const vh = (host: string) => rt.findVirtualHost(host)?.config.name;

  it.each([
    ['web', 'web.default.svc.cluster.local:80'],
    ['web:80', 'web.default.svc.cluster.local:80'],
    ['web.default', 'web.default.svc.cluster.local:80'],
    ['web.default:80', 'web.default.svc.cluster.local:80'],
    ['web.default.svc', 'web.default.svc.cluster.local:80'],
    ['web.default.svc:80', 'web.default.svc.cluster.local:80'],
    ['web.default.svc.cluster.local', 'web.default.svc.cluster.local:80'],
    ['web.default.svc.cluster.local:80', 'web.default.svc.cluster.local:80'],
    ['web.default.svc.cluster.local.', 'web.default.svc.cluster.local:80'],
    ['WEB.Default.SVC.cluster.local:80', 'web.default.svc.cluster.local:80'],
    ['10.96.0.10', 'web.default.svc.cluster.local:80'],
    ['10.96.0.10:80', 'web.default.svc.cluster.local:80'],
    ['web:9090', 'web.default.svc.cluster.local:9090'],
    ['web.default:9090', 'web.default.svc.cluster.local:9090'],
    ['10.96.0.10:9090', 'web.default.svc.cluster.local:9090'],
    ['api.other', 'api.other.svc.cluster.local:8080'],
    ['api.other:8080', 'api.other.svc.cluster.local:8080'],
    ['api.other.svc.cluster.local:8080', 'api.other.svc.cluster.local:8080'],
    ['shop.example.com', 'wild-suffix'],
    ['shop.example.com:443', 'wild-suffix'],
    ['example.org', 'wild-prefix'],
  ])('%s → %s', (host, expected) => {
    expect(vh(host)).toBe(expected);
  });

  it.each(['api', 'api:8080', 'web.other', 'web:1234', '10.96.0.99', ''])('%s has no virtual host', (host) => {
    expect(vh(host)).toBeUndefined();
  });

  it('falls back to a catch-all `*` last', () => {
    const t = new RouteTable({ ...table, virtualHosts: [...table.virtualHosts, { name: 'all', domains: ['*'], routes: [] }] });
    expect(t.findVirtualHost('nothing.here')?.config.name).toBe('all');
    expect(t.findVirtualHost('web')?.config.name).toBe('web.default.svc.cluster.local:80');
  });
});

describe('route matching', () => {
  const vhost: VirtualHostConfig = {
    name: 'v',
    domains: ['v'],
    routes: [
      fwd('exact', 'c-exact', { kind: 'exact', value: '/health' }),
      fwd('seg', 'c-seg', { kind: 'segment-prefix', value: '/api' }),
      fwd('hdr', 'c-canary', { kind: 'prefix', value: '/' }, { headers: [{ name: 'X-Canary', exact: 'yes', invert: false }] }),
      fwd('nohdr', 'c-no-debug', { kind: 'prefix', value: '/debug' }, { headers: [{ name: 'x-debug', present: true, invert: true }] }),
      fwd('ci', 'c-ci', { kind: 'prefix', value: '/Static' }, { caseSensitive: false }),
      fwd('root', 'c-root'),
    ],
  };
  const rt = new RouteTable({ name: 't', version: '1', virtualHosts: [vhost] });
  const v = rt.findVirtualHost('v')!;
  const cluster = (path: string, headers: Record<string, string> = {}) => {
    const r = findRoute(v, path, headers);
    return r?.action.kind === 'forward' ? r.action.targets[0]!.cluster : undefined;
  };

  it('takes the first match in order', () => {
    expect(cluster('/health')).toBe('c-exact');
    expect(cluster('/health?full=1')).toBe('c-exact');
    expect(cluster('/healthz')).toBe('c-root');
    expect(cluster('/api')).toBe('c-seg');
    expect(cluster('/api/v1')).toBe('c-seg');
    expect(cluster('/apix')).toBe('c-root');
    expect(cluster('/x', { 'x-canary': 'yes' })).toBe('c-canary');
    expect(cluster('/x', { 'x-canary': 'no' })).toBe('c-root');
    expect(cluster('/debug/x')).toBe('c-no-debug');
    expect(cluster('/debug/x', { 'x-debug': '1' })).toBe('c-root');
    expect(cluster('/STATIC/app.js')).toBe('c-ci');
  });

  it('has no route when nothing matches', () => {
    const t = new RouteTable({ name: 't', version: '1', virtualHosts: [{ name: 'v', domains: ['v'], routes: [fwd('a', 'a', { kind: 'exact', value: '/a' })] }] });
    expect(findRoute(t.findVirtualHost('v')!, '/b', {})).toBeUndefined();
  });
});

describe('weighted clusters', () => {
  it('splits by weight', () => {
    const action = { kind: 'forward' as const, targets: [{ cluster: 'v1', weight: 90 }, { cluster: 'v2', weight: 10 }], totalWeight: 100 };
    expect(pickCluster(action, 0)).toBe('v1');
    expect(pickCluster(action, 0.899)).toBe('v1');
    expect(pickCluster(action, 0.9)).toBe('v2');
    expect(pickCluster(action, 0.9999)).toBe('v2');
    let v2 = 0;
    for (let i = 0; i < 10_000; i++) if (pickCluster(action, Math.random()) === 'v2') v2++;
    expect(v2).toBeGreaterThan(800);
    expect(v2).toBeLessThan(1200);
  });
});

describe('absolute-form request targets', () => {
  it.each([
    ['http://web.default/', 'web.default', '/', false],
    ['http://web.default', 'web.default', '/', true],
    ['http://web.default:8080/a/b?c=d', 'web.default:8080', '/a/b?c=d', false],
    ['http://user:pw@web/x', 'web', '/x', false],
    ['http://web?q=1', 'web', '/?q=1', false],
  ])('%s', (target, authority, path, emptyPath) => {
    expect(splitAbsoluteUrl(target)).toEqual({ authority, path, emptyPath });
  });

  it('leaves origin-form alone', () => {
    expect(splitAbsoluteUrl('/a')).toBeUndefined();
    expect(splitAbsoluteUrl('*')).toBeUndefined();
  });
});
