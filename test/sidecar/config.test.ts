// Tests `skein sidecar` flag and environment parsing into the frozen Config, and the errors that name each flag.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../sidecar/config.ts';
import {
  AdminListenError,
  ConfigInvalidError,
  SIDECAR_ERROR_CODES,
  SkeinSidecarError,
  XdsResourceInvalidError,
  XdsStreamError,
} from '../../sidecar/errors.ts';

const base = ['--control-plane', 'skein.skein-system:15010', '--pod', 'web-0', '--namespace', 'default', '--ip', '10.1.2.3'];
const tlsFlags = ['--token-file', '/var/run/skein/token', '--ca-root-file', '/etc/skein/root-cert.pem'];

function failure(argv: string[], env: Record<string, string> = {}): ConfigInvalidError {
  try {
    parseConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigInvalidError);
    expect(err).toBeInstanceOf(SkeinSidecarError);
    expect((err as ConfigInvalidError).code).toBe('SKEIN_CONFIG_INVALID');
    return err as ConfigInvalidError;
  }
  throw new Error('expected a ConfigInvalidError');
}

describe('parseConfig', () => {
  it('applies the defaults', () => {
    const c = parseConfig([...base, ...tlsFlags], {});
    expect(c).toEqual({
      controlPlane: { host: 'skein.skein-system', port: 15010 },
      pod: 'web-0',
      namespace: 'default',
      serviceAccount: 'default',
      ip: '10.1.2.3',
      appPorts: [],
      outbound: { host: '127.0.0.1', port: 15001 },
      inbound: { host: '10.1.2.3', port: 15006 },
      admin: { host: '127.0.0.1', port: 15000 },
      adminAddressUnsafe: false,
      clusterDomain: 'cluster.local',
      drainTimeoutMs: 5000,
      xdsProtocol: 'auto',
      mtls: {
        enabled: true,
        tokenFile: '/var/run/skein/token',
        caAddress: { host: 'skein.skein-system', port: 15012 },
        caRootFile: '/etc/skein/root-cert.pem',
        trustDomain: 'cluster.local',
        minTlsVersion: 'TLSv1.2',
      },
    });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.mtls)).toBe(true);
    expect(Object.isFrozen(c.appPorts)).toBe(true);
  });

  it('reads every flag, with repeated --app-port', () => {
    const c = parseConfig(
      [
        ...base,
        '--service-account', 'web',
        '--app-port', '8080',
        '--app-port', '9090',
        '--outbound-address', '127.0.0.1:0',
        '--inbound-address', '[::1]:15006',
        '--admin-address', '127.0.0.5:15000',
        '--cluster-domain', 'corp.local',
        '--drain-timeout', '250ms',
        '--xds-protocol', 'sotw',
        '--mtls', 'off',
      ],
      {},
    );
    expect(c).toMatchObject({
      serviceAccount: 'web',
      appPorts: [8080, 9090],
      outbound: { host: '127.0.0.1', port: 0 },
      inbound: { host: '::1', port: 15006 },
      admin: { host: '127.0.0.5', port: 15000 },
      clusterDomain: 'corp.local',
      drainTimeoutMs: 250,
      xdsProtocol: 'sotw',
      mtls: { enabled: false },
    });
  });

  it('reads the mTLS flags and their environment fallbacks', () => {
    const c = parseConfig([...base, '--ca-address', '10.0.0.9:15443', '--trust-domain', 'corp.example'], {
      SKEIN_TOKEN_FILE: '/t',
      SKEIN_CA_ROOT_FILE: '/r.pem',
    });
    expect(c.mtls).toEqual({
      enabled: true,
      tokenFile: '/t',
      caAddress: { host: '10.0.0.9', port: 15443 },
      caRootFile: '/r.pem',
      trustDomain: 'corp.example',
      minTlsVersion: 'TLSv1.2',
    });
    expect(parseConfig([...base, ...tlsFlags, '--tls-min-version', '1.3'], {}).mtls).toMatchObject({ minTlsVersion: 'TLSv1.3' });
    expect(parseConfig([...base, ...tlsFlags], { SKEIN_TLS_MIN_VERSION: '1.3' }).mtls).toMatchObject({ minTlsVersion: 'TLSv1.3' });
    expect(parseConfig(base, { SKEIN_MTLS: 'off' }).mtls).toEqual({ enabled: false });
    expect(parseConfig([...base, '--control-plane', '[fd00::1]:15010', ...tlsFlags], {}).mtls).toMatchObject({ caAddress: { host: 'fd00::1', port: 15012 } });
  });

  it('writes an IPv6 pod IP in the form the control plane writes endpoint addresses (RFC 5952)', () => {
    const argv = base.map((a) => (a === '10.1.2.3' ? 'FD00:0:0::0A' : a));
    expect(parseConfig([...argv, ...tlsFlags], {}).ip).toBe('fd00::a');
  });

  it('falls back to the environment, flags winning', () => {
    const env = {
      SKEIN_CONTROL_PLANE: '10.0.0.1:15010',
      POD_NAME: 'api-1',
      POD_NAMESPACE: 'shop',
      SERVICE_ACCOUNT: 'api',
      POD_IP: '10.2.0.4',
      SKEIN_APP_PORTS: '8080, 8443',
      SKEIN_DRAIN_TIMEOUT: '1m',
      SKEIN_MTLS: 'off',
    };
    const c = parseConfig([], env);
    expect(c).toMatchObject({
      controlPlane: { host: '10.0.0.1', port: 15010 },
      pod: 'api-1',
      namespace: 'shop',
      serviceAccount: 'api',
      ip: '10.2.0.4',
      appPorts: [8080, 8443],
      inbound: { host: '10.2.0.4', port: 15006 },
      drainTimeoutMs: 60_000,
    });
    expect(parseConfig(['--pod', 'other', '--app-port', '1'], env)).toMatchObject({ pod: 'other', appPorts: [1] });
  });

  it.each([
    [['--pod', 'p', '--namespace', 'n', '--ip', '10.0.0.1'], '--control-plane', /is required \(or set SKEIN_CONTROL_PLANE\)/],
    [base.filter((_, i) => i !== 2 && i !== 3), '--pod', /is required \(or set POD_NAME\)/],
    [[...base.slice(0, 6), '--ip', 'pod-ip'], '--ip', /"pod-ip" is not an IP address/],
    [['--control-plane', 'nohost', ...base.slice(2)], '--control-plane', /is not HOST:PORT/],
    [['--control-plane', 'h:0', ...base.slice(2)], '--control-plane', /must be 1-65535/],
    [[...base, '--app-port', '70000'], '--app-port', /"70000" is not a port/],
    [[...base, '--app-port', 'http'], '--app-port', /"http" is not a port/],
    [[...base, '--drain-timeout', 'soon'], '--drain-timeout', /not a duration/],
    [[...base, '--xds-protocol', 'rest'], '--xds-protocol', /not one of auto, delta, sotw/],
    [[...base, '--namespace', 'Bad_NS'], '--namespace', /not a DNS label/],
    [[...base, '--bogus'], '--bogus', /Unknown option/],
    [base, '--token-file', /is required for mutual TLS.*--mtls off/],
    [[...base, '--token-file', '/t'], '--ca-root-file', /is required for mutual TLS.*root-cert.pem/],
    [[...base, '--mtls', 'maybe'], '--mtls', /"maybe" is not on or off/],
    [[...base, ...tlsFlags, '--trust-domain', 'Bad Domain'], '--trust-domain', /not a DNS-style trust domain/],
    [[...base, ...tlsFlags, '--ca-address', 'nohost'], '--ca-address', /is not HOST:PORT/],
    [[...base, ...tlsFlags, '--tls-min-version', '1.1'], '--tls-min-version', /"1.1" is not 1.2 or 1.3/],
  ])('rejects %j naming %s', (argv, flag, message) => {
    const err = failure(argv);
    expect(err.flag).toBe(flag);
    expect(err.message.startsWith(`${flag}: `)).toBe(true);
    expect(err.message).toMatch(message);
  });

  it('refuses a non-loopback admin address unless --admin-address-unsafe', () => {
    const err = failure([...base, ...tlsFlags, '--admin-address', '0.0.0.0:15000']);
    expect(err.flag).toBe('--admin-address');
    expect(err.message).toMatch(/not a loopback address.*--admin-address-unsafe/);
    expect(parseConfig([...base, ...tlsFlags, '--admin-address', '0.0.0.0:15000', '--admin-address-unsafe'], {}).admin.host).toBe('0.0.0.0');
    expect(parseConfig([...base, ...tlsFlags, '--admin-address', '[::1]:0'], {}).admin).toEqual({ host: '::1', port: 0 });
  });
});

describe('sidecar error codes', () => {
  it.each([
    [new ConfigInvalidError('--x', 'bad'), SIDECAR_ERROR_CODES.configInvalid, 'ConfigInvalidError'],
    [new XdsResourceInvalidError(['Cluster "a": lb_policy: MAGLEV is not supported']), SIDECAR_ERROR_CODES.xdsResourceInvalid, 'XdsResourceInvalidError'],
    [new XdsStreamError('UNAVAILABLE: down'), SIDECAR_ERROR_CODES.xdsStream, 'XdsStreamError'],
    [new AdminListenError('127.0.0.1:15000', new Error('EADDRINUSE')), SIDECAR_ERROR_CODES.adminListen, 'AdminListenError'],
  ])('%s has code %s', (err, code, name) => {
    expect(err).toBeInstanceOf(SkeinSidecarError);
    expect(err.code).toBe(code);
    expect(err.name).toBe(name);
    expect(err.message.length).toBeGreaterThan(0);
  });

  it('gives each class its stable code', () => {
    expect(Object.values(SIDECAR_ERROR_CODES).every((c) => /^SKEIN_[A-Z_]+$/.test(c))).toBe(true);
    expect(new Set(Object.values(SIDECAR_ERROR_CODES)).size).toBe(Object.values(SIDECAR_ERROR_CODES).length);
  });
});
