// The control plane's flags: defaults, registry choice, host:port parsing, CA root flags, and errors naming the flag.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../control-plane/config.ts';
import { ConfigError } from '../../control-plane/errors.ts';

describe('control-plane config', () => {
  it('defaults to loopback ports and a local CA directory', () => {
    const c = parseConfig(['--registry', 'examples/registry.yaml'], {});
    expect(c.registry).toMatchObject({ kind: 'file' });
    expect(c.xdsAddress).toEqual({ host: '127.0.0.1', port: 15010 });
    expect(c.xdsTlsAddress).toEqual({ host: '127.0.0.1', port: 15012 });
    expect(c.adminAddress).toEqual({ host: '127.0.0.1', port: 15014 });
    expect(c.caDir).toMatch(/\.skein\/ca$/);
    expect(c.caRoot).toBeUndefined();
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('picks Kubernetes with --kubernetes or inside a cluster', () => {
    expect(parseConfig(['--kubernetes', '--namespaces', 'a, b'], {}).registry).toEqual({ kind: 'kubernetes', kubeconfig: undefined, namespaces: ['a', 'b'] });
    // Service-account tokens must be projected for the CA's audience unless told otherwise.
    expect(parseConfig(['--kubernetes'], {}).tokenAudience).toBe('skein-ca');
    expect(parseConfig(['--kubernetes', '--token-audience', 'none'], {}).tokenAudience).toBe('');
    expect(parseConfig(['--kubernetes'], { SKEIN_TOKEN_AUDIENCE: 'istio-ca' }).tokenAudience).toBe('istio-ca');
    expect(parseConfig([], { KUBERNETES_SERVICE_HOST: '10.0.0.1' }).registry.kind).toBe('kubernetes');
  });

  it('names what is wrong', () => {
    const bad = (argv: string[]) => {
      try {
        parseConfig(argv, {});
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error('expected a ConfigError');
    };
    expect(bad([])).toMatch(/no registry: pass --registry FILE/);
    expect(bad(['--registry', 'r.yaml', '--kubernetes'])).toMatch(/exclude each other/);
    expect(bad(['--registry', 'r.yaml', '--xds-address', 'localhost'])).toMatch(/--xds-address: "localhost" is not HOST:PORT/);
    expect(bad(['--registry', 'r.yaml', '--debounce-ms', 'soon'])).toMatch(/--debounce-ms/);
    expect(bad(['--registry', 'r.yaml', '--ca-root-cert', 'root.crt'])).toMatch(/--ca-root-cert and --ca-root-key go together/);
    expect(bad(['--registry', 'r.yaml', '--bogus'])).toMatch(/bogus/);
  });

  it('takes a user-provided root and disables TLS with none', () => {
    const c = parseConfig(['--registry', 'r.yaml', '--ca-root-cert', '/pki/root.crt', '--ca-root-key', '/pki/root.key', '--xds-tls-address', 'none'], {});
    expect(c.caRoot).toEqual({ certFile: '/pki/root.crt', keyFile: '/pki/root.key' });
    expect(c.xdsTlsAddress).toBeUndefined();
  });
});
