// Parses `skein sidecar` flags and environment into one frozen Config; every problem names its flag.
import { isIP } from 'node:net';
import { nodeUtil } from './builtins.ts';
import { ConfigInvalidError } from './errors.ts';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface Config {
  /** The control plane's ADS address. */
  readonly controlPlane: HostPort;
  readonly pod: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The pod's IP: part of the xDS node id, and the default inbound address. */
  readonly ip: string;
  /** The workload's own ports (inbound traffic is handed to these). */
  readonly appPorts: readonly number[];
  readonly outbound: HostPort;
  readonly inbound: HostPort;
  readonly admin: HostPort;
  /** The operator allowed a non-loopback admin address. */
  readonly adminAddressUnsafe: boolean;
  readonly clusterDomain: string;
  /** How long SIGTERM waits for in-flight work before closing connections. */
  readonly drainTimeoutMs: number;
  readonly xdsProtocol: 'auto' | 'delta' | 'sotw';
  /** Mutual TLS between sidecars (on unless `--mtls off`). */
  readonly mtls: MtlsConfig;
}

export type MtlsConfig =
  | { readonly enabled: false }
  | {
      readonly enabled: true;
      /** Bootstrap token (local mode, `skein token`) or projected service-account token; re-read on each request. */
      readonly tokenFile: string;
      /** The control plane's CertificateService (TLS, 15012). */
      readonly caAddress: HostPort;
      /** PEM root(s) that sign the control plane's serving certificate. */
      readonly caRootFile: string;
      readonly trustDomain: string;
      /** Lowest TLS version between peers: 1.2 (default, as Istio's; ECDHE with AEAD ciphers only) or 1.3. */
      readonly minTlsVersion: 'TLSv1.2' | 'TLSv1.3';
    };

export const SIDECAR_USAGE = `Usage: skein sidecar [flags]

  --control-plane HOST:PORT   control plane xDS address          (env SKEIN_CONTROL_PLANE; required)
  --pod NAME                  this pod's name                    (env POD_NAME; required)
  --namespace NS              this pod's namespace               (env POD_NAMESPACE; required)
  --service-account SA        this pod's service account         (env SERVICE_ACCOUNT; default "default")
  --ip POD_IP                 this pod's IP                      (env POD_IP; required)
  --app-port PORT             the workload's port; repeatable    (env SKEIN_APP_PORTS, comma-separated)
  --outbound-address ADDR     outbound listener                  (env SKEIN_OUTBOUND_ADDRESS; default 127.0.0.1:15001)
  --inbound-address ADDR      inbound listener                   (env SKEIN_INBOUND_ADDRESS; default POD_IP:15006)
  --admin-address ADDR        admin server, loopback only        (env SKEIN_ADMIN_ADDRESS; default 127.0.0.1:15000)
  --admin-address-unsafe      allow a non-loopback admin address (env SKEIN_ADMIN_ADDRESS_UNSAFE=true)
  --cluster-domain DOMAIN     Kubernetes cluster domain          (env SKEIN_CLUSTER_DOMAIN; default cluster.local)
  --drain-timeout DURATION    drain time on SIGTERM or POST /quitquitquit, e.g. 5s (env SKEIN_DRAIN_TIMEOUT; default 5s)
  --xds-protocol MODE         auto | delta | sotw                (env SKEIN_XDS_PROTOCOL; default auto)
  --mtls on|off               mutual TLS between sidecars        (env SKEIN_MTLS; default on; off = plaintext, no CA)
  --token-file FILE           token proving our service account  (env SKEIN_TOKEN_FILE; required with --mtls on)
  --ca-address HOST:PORT      the control plane's CA (TLS)       (env SKEIN_CA_ADDRESS; default <control-plane host>:15012)
  --ca-root-file FILE         PEM root of the control plane cert (env SKEIN_CA_ROOT_FILE; required with --mtls on)
  --trust-domain DOMAIN       SPIFFE trust domain                (env SKEIN_TRUST_DOMAIN; default cluster.local)
  --tls-min-version 1.2|1.3   lowest TLS version between peers   (env SKEIN_TLS_MIN_VERSION; default 1.2, as Istio)
  --help                      show this help

Environment only:
  SKEIN_DEBUG=xds,tls,...     debug lines for these modules (* for all) on stderr, as JSON
  SKEIN_LEAN_EXEC=0           do not restart in place with the compile cache and small-heap node flags
  SKEIN_MALLOC=system         keep glibc's malloc (by default the restart preloads jemalloc when installed)
  NODE_COMPILE_CACHE=DIR      where that compile cache lives (default node_modules/.cache/skein-compile)

--service-account and --namespace must be what the token names (the certificate's identity).`;

const OPTIONS = {
  'control-plane': { type: 'string' },
  pod: { type: 'string' },
  namespace: { type: 'string' },
  'service-account': { type: 'string' },
  ip: { type: 'string' },
  'app-port': { type: 'string', multiple: true },
  'outbound-address': { type: 'string' },
  'inbound-address': { type: 'string' },
  'admin-address': { type: 'string' },
  'admin-address-unsafe': { type: 'boolean' },
  'cluster-domain': { type: 'string' },
  'drain-timeout': { type: 'string' },
  'xds-protocol': { type: 'string' },
  mtls: { type: 'string' },
  'token-file': { type: 'string' },
  'ca-address': { type: 'string' },
  'ca-root-file': { type: 'string' },
  'trust-domain': { type: 'string' },
  'tls-min-version': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** True when argv asks for help (checked before parsing so `--help` works with missing required flags). */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}

/** `host:port` or `[v6]:port`; `allowZero` lets the OS choose (listen addresses). */
export function parseHostPort(flag: string, value: string, allowZero: boolean): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:[\]]+):(\d+)$/.exec(value);
  if (!m) throw new ConfigInvalidError(flag, `${JSON.stringify(value)} is not HOST:PORT (IPv6 as [addr]:port)`);
  const port = Number(m[2]);
  if (port > 65535 || (port === 0 && !allowZero))
    throw new ConfigInvalidError(flag, `port ${m[2]} in ${JSON.stringify(value)} must be ${allowZero ? '0' : '1'}-65535`);
  return { host: m[1]!, port };
}

function parsePort(flag: string, value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new ConfigInvalidError(flag, `${JSON.stringify(value)} is not a port (1-65535)`);
  return n;
}

/** `250ms`, `5s`, `1m`, or a bare number of seconds. */
export function parseDuration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!m) throw new ConfigInvalidError(flag, `${JSON.stringify(value)} is not a duration (e.g. 500ms, 5s, 1m)`);
  const n = Number(m[1]);
  return Math.round(m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000);
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '0:0:0:0:0:0:0:1';
}

const DNS_LABELS = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function parseConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): Config {
  let values: Partial<Record<keyof typeof OPTIONS, string | string[] | boolean>>;
  try {
    ({ values } = nodeUtil.parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    const msg = (err as Error).message;
    const flag = /'(-[^' ]+)/.exec(msg)?.[1] ?? /"(-[^" ]+)/.exec(msg)?.[1] ?? 'arguments';
    throw new ConfigInvalidError(flag, `${msg}\n\n${SIDECAR_USAGE}`);
  }
  const str = (flag: keyof typeof OPTIONS, envName: string, fallback?: string): string | undefined => {
    const v = values[flag];
    if (typeof v === 'string') return v;
    const e = env[envName];
    return e !== undefined && e !== '' ? e : fallback;
  };
  const required = (flag: keyof typeof OPTIONS, envName: string): string => {
    const v = str(flag, envName);
    if (v === undefined || v.trim() === '')
      throw new ConfigInvalidError(`--${flag}`, `is required (or set ${envName}); see skein sidecar --help`);
    return v.trim();
  };

  const controlPlane = parseHostPort('--control-plane', required('control-plane', 'SKEIN_CONTROL_PLANE'), false);
  const pod = required('pod', 'POD_NAME');
  const namespace = required('namespace', 'POD_NAMESPACE');
  if (!DNS_LABELS.test(namespace)) throw new ConfigInvalidError('--namespace', `${JSON.stringify(namespace)} is not a DNS label`);
  const serviceAccount = str('service-account', 'SERVICE_ACCOUNT', 'default')!;
  const given = required('ip', 'POD_IP');
  if (isIP(given) === 0) throw new ConfigInvalidError('--ip', `${JSON.stringify(given)} is not an IP address`);
  // IPv6 in RFC 5952 form, as the control plane writes endpoint addresses: the sidecar finds itself among them.
  const ip = isIP(given) === 6 ? new URL(`http://[${given}]/`).hostname.slice(1, -1) : given;

  const portArgs = values['app-port'] as string[] | undefined;
  const appPorts = portArgs?.length
    ? portArgs.map((p) => parsePort('--app-port', p))
    : (env.SKEIN_APP_PORTS ?? '')
        .split(',')
        .filter((p) => p.trim() !== '')
        .map((p) => parsePort('--app-port', p));

  const outbound = parseHostPort('--outbound-address', str('outbound-address', 'SKEIN_OUTBOUND_ADDRESS', '127.0.0.1:15001')!, true);
  const inboundDefault = isIP(ip) === 6 ? `[${ip}]:15006` : `${ip}:15006`;
  const inbound = parseHostPort('--inbound-address', str('inbound-address', 'SKEIN_INBOUND_ADDRESS', inboundDefault)!, true);
  const admin = parseHostPort('--admin-address', str('admin-address', 'SKEIN_ADMIN_ADDRESS', '127.0.0.1:15000')!, true);
  const adminAddressUnsafe = values['admin-address-unsafe'] === true || env.SKEIN_ADMIN_ADDRESS_UNSAFE === 'true';
  if (!isLoopback(admin.host) && !adminAddressUnsafe)
    throw new ConfigInvalidError(
      '--admin-address',
      `${admin.host} is not a loopback address; the admin server exposes config and must stay on 127.0.0.1 or ::1 (pass --admin-address-unsafe to override)`,
    );

  const clusterDomain = str('cluster-domain', 'SKEIN_CLUSTER_DOMAIN', 'cluster.local')!;
  if (!DNS_LABELS.test(clusterDomain))
    throw new ConfigInvalidError('--cluster-domain', `${JSON.stringify(clusterDomain)} is not a DNS domain`);
  const drainTimeoutMs = parseDuration('--drain-timeout', str('drain-timeout', 'SKEIN_DRAIN_TIMEOUT', '5s')!);
  const xdsProtocol = str('xds-protocol', 'SKEIN_XDS_PROTOCOL', 'auto')!;
  if (xdsProtocol !== 'auto' && xdsProtocol !== 'delta' && xdsProtocol !== 'sotw')
    throw new ConfigInvalidError('--xds-protocol', `${JSON.stringify(xdsProtocol)} is not one of auto, delta, sotw`);

  const mtls = parseMtls(str, controlPlane);

  return Object.freeze({
    controlPlane: Object.freeze(controlPlane),
    pod,
    namespace,
    serviceAccount,
    ip,
    appPorts: Object.freeze(appPorts),
    outbound: Object.freeze(outbound),
    inbound: Object.freeze(inbound),
    admin: Object.freeze(admin),
    adminAddressUnsafe,
    clusterDomain,
    drainTimeoutMs,
    xdsProtocol,
    mtls,
  });
}

function parseMtls(
  str: (flag: keyof typeof OPTIONS, envName: string, fallback?: string) => string | undefined,
  controlPlane: HostPort,
): MtlsConfig {
  const mode = str('mtls', 'SKEIN_MTLS', 'on')!;
  if (mode === 'off') return Object.freeze({ enabled: false });
  if (mode !== 'on') throw new ConfigInvalidError('--mtls', `${JSON.stringify(mode)} is not on or off`);
  const tokenFile = str('token-file', 'SKEIN_TOKEN_FILE');
  if (tokenFile === undefined || tokenFile.trim() === '')
    throw new ConfigInvalidError(
      '--token-file',
      'is required for mutual TLS (or set SKEIN_TOKEN_FILE); make one with `skein token`, or pass --mtls off to run without a CA (plaintext)',
    );
  const caRootFile = str('ca-root-file', 'SKEIN_CA_ROOT_FILE');
  if (caRootFile === undefined || caRootFile.trim() === '')
    throw new ConfigInvalidError(
      '--ca-root-file',
      'is required for mutual TLS (or set SKEIN_CA_ROOT_FILE): the PEM root that signs the control plane certificate (<ca-dir>/root-cert.pem in local mode)',
    );
  const cpHost = controlPlane.host.includes(':') ? `[${controlPlane.host}]` : controlPlane.host;
  const caAddress = parseHostPort('--ca-address', str('ca-address', 'SKEIN_CA_ADDRESS', `${cpHost}:15012`)!, false);
  const trustDomain = str('trust-domain', 'SKEIN_TRUST_DOMAIN', 'cluster.local')!;
  if (!DNS_LABELS.test(trustDomain))
    throw new ConfigInvalidError('--trust-domain', `${JSON.stringify(trustDomain)} is not a DNS-style trust domain (e.g. cluster.local)`);
  const tlsMin = str('tls-min-version', 'SKEIN_TLS_MIN_VERSION', '1.2')!;
  if (tlsMin !== '1.2' && tlsMin !== '1.3') throw new ConfigInvalidError('--tls-min-version', `${JSON.stringify(tlsMin)} is not 1.2 or 1.3`);
  const minTlsVersion = tlsMin === '1.2' ? 'TLSv1.2' : 'TLSv1.3';
  return Object.freeze({
    enabled: true,
    tokenFile: tokenFile.trim(),
    caAddress: Object.freeze(caAddress),
    caRootFile: caRootFile.trim(),
    trustDomain,
    minTlsVersion,
  });
}
