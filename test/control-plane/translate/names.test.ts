// Tests naming rules: FQDNs, cluster names, protocol detection (Istio's rule), vhost domains and scope names.
import { describe, expect, it } from 'vitest';
import {
  clusterIPOf,
  clusterName,
  defaultHttpPort,
  detectProtocol,
  envoyScope,
  meshPorts,
  namespaceOfScope,
  PROXYLESS_SCOPE,
  serviceDomains,
  serviceFqdn,
} from '../../../control-plane/translate/names.ts';
import { service } from './fixtures.ts';

describe('names', () => {
  it('builds FQDNs with the configured cluster domain and Istio-style cluster names', () => {
    expect(serviceFqdn('web', 'shop')).toBe('web.shop.svc.cluster.local');
    expect(serviceFqdn('Web', 'shop', 'corp.example')).toBe('web.shop.svc.corp.example');
    expect(clusterName(8080, serviceFqdn('web', 'shop'))).toBe('outbound|8080||web.shop.svc.cluster.local');
  });

  it.each([
    [{ name: 'http', appProtocol: 'kubernetes.io/h2c' }, 'http2'],
    [{ name: 'tcp', appProtocol: 'grpc' }, 'http2'],
    [{ name: 'grpc', appProtocol: 'http' }, 'http'],
    [{ name: 'web', appProtocol: 'http2' }, 'http2'],
    [{ name: 'http', appProtocol: 'tcp' }, 'tcp'],
    [{ name: 'http', appProtocol: 'mycompany.com/thing' }, 'http'],
    [{ name: 'http' }, 'http'],
    [{ name: 'http-api' }, 'http'],
    [{ name: 'http2-api' }, 'http2'],
    [{ name: 'grpc' }, 'http2'],
    [{ name: 'grpc-backend' }, 'http2'],
    [{ name: 'grpc-web' }, 'http'],
    [{ name: 'h2c' }, 'http2'],
    [{ name: 'tcp-db' }, 'tcp'],
    [{ name: 'TCP' }, 'tcp'],
    [{ name: 'https' }, 'tcp'],
    [{ name: 'postgres' }, 'http'],
    [{ name: 'mysql' }, 'tcp'],
    [{ name: 'redis-main' }, 'tcp'],
    [{ name: 'mongo' }, 'tcp'],
    [{ name: 'db', appProtocol: 'mysql' }, 'tcp'],
    [{ name: 'grpc-api', appProtocol: 'grpc-web' }, 'http'],
    [{}, 'http'],
  ] as const)('detects %j as %s', (port, expected) => {
    expect(detectProtocol(port)).toBe(expected);
  });

  it('keeps only TCP ports for the mesh', () => {
    const svc = service('a', 'dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53 }] });
    expect(meshPorts(svc).map((p) => p.name)).toEqual(['dns-tcp']);
  });

  it('picks port 80 as the default HTTP port, else the first HTTP port', () => {
    expect(defaultHttpPort([8080, 80])).toBe(80);
    expect(defaultHttpPort([8080, 9090])).toBe(8080);
    expect(defaultHttpPort([])).toBeUndefined();
  });

  it('has no cluster IP for headless, ExternalName or unallocated Services', () => {
    expect(clusterIPOf(service('a', 'b', { clusterIP: '10.0.0.1' }))).toBe('10.0.0.1');
    expect(clusterIPOf(service('a', 'b', { clusterIP: 'None' }))).toBeUndefined();
    expect(clusterIPOf(service('a', 'b', { type: 'ExternalName', externalName: 'x.example.com' }))).toBeUndefined();
    expect(clusterIPOf(service('a', 'b', {}))).toBeUndefined();
  });

  it('lists domains with ports, then without for the default port, lower-cased and unique', () => {
    const d = serviceDomains({ name: 'Web', namespace: 'shop', fqdn: 'web.shop.svc.cluster.local', clusterIP: '10.0.0.1', port: 80, isDefaultPort: true });
    expect(d.remote).toEqual([
      'web.shop.svc.cluster.local:80',
      'web.shop.svc:80',
      'web.shop:80',
      '10.0.0.1:80',
      'web.shop.svc.cluster.local',
      'web.shop.svc',
      'web.shop',
      '10.0.0.1',
    ]);
    expect(d.local).toEqual(['web:80', 'web']);
    expect(new Set([...d.remote, ...d.local]).size).toBe(d.remote.length + d.local.length);
  });

  it('leaves out the cluster IP for headless Services and brackets IPv6', () => {
    const headless = serviceDomains({ name: 'db', namespace: 'a', fqdn: 'db.a.svc.cluster.local', port: 5432, isDefaultPort: false });
    expect(headless.remote).toEqual(['db.a.svc.cluster.local:5432', 'db.a.svc:5432', 'db.a:5432']);
    expect(headless.local).toEqual(['db:5432']);
    const v6 = serviceDomains({ name: 'x', namespace: 'a', fqdn: 'x.a.svc.cluster.local', clusterIP: 'FD00::1', port: 80, isDefaultPort: false });
    expect(v6.remote).toContain('[fd00::1]:80');
  });

  it('names scopes', () => {
    expect(envoyScope('shop')).toBe('envoy/shop');
    expect(namespaceOfScope('envoy/shop')).toBe('shop');
    expect(namespaceOfScope(PROXYLESS_SCOPE)).toBeUndefined();
  });
});
