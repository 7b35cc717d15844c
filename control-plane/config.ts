// Parses the control plane's flags and environment into one frozen Config.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from './errors.ts';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export type RegistrySource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'kubernetes'; readonly kubeconfig?: string; readonly namespaces: readonly string[] };

export interface Config {
  readonly registry: RegistrySource;
  readonly xdsAddress: HostPort;
  /** ADS and the CertificateService over TLS with the control plane's SPIFFE certificate; undefined when disabled. */
  readonly xdsTlsAddress?: HostPort;
  readonly adminAddress: HostPort;
  readonly clusterDomain: string;
  readonly trustDomain: string;
  /** Kubernetes mode: the audience a service-account token must carry to get a certificate; '' for the API's default. */
  readonly tokenAudience: string;
  readonly debounceMs: number;
  readonly caDir: string;
  /** A root (or intermediate) the user provides; the CA then issues from an intermediate it makes under it. */
  readonly caRoot?: { readonly certFile: string; readonly keyFile: string; readonly trustBundleFile?: string };
}

export const USAGE = `Usage: skein control-plane (--registry FILE | --kubernetes [--kubeconfig FILE] [--namespaces a,b])
                           [--xds-address HOST:PORT] [--xds-tls-address HOST:PORT|none] [--admin-address HOST:PORT]
                           [--cluster-domain cluster.local] [--trust-domain cluster.local]
                           [--debounce-ms 100] [--ca-dir .skein/ca] [--token-audience skein-ca|none]
                           [--ca-root-cert FILE --ca-root-key FILE [--ca-trust-bundle FILE]]

  --registry FILE        serve Services, EndpointSlices and Pods from a multi-document YAML file (watched)
  --kubernetes           watch the Kubernetes API (in-cluster config, or --kubeconfig / $KUBECONFIG)
  --namespaces a,b       only these namespaces (default: all)
  --xds-address          xDS over gRPC (ADS and the per-type services), plaintext (default 127.0.0.1:15010)
  --xds-tls-address      the same xDS and certificate signing over TLS (default 127.0.0.1:15012; "none" to disable)
  --ca-dir               the local CA: root key (0600), trust bundle, bootstrap-token secret (default .skein/ca)
  --ca-root-cert FILE    issue under your own root: its certificate (with --ca-root-key, mode 0600)
  --ca-root-key FILE     and its private key; the CA makes an intermediate under it and keeps that in memory
  --ca-trust-bundle FILE extra roots to trust (needed when --ca-root-cert is itself an intermediate)
  --admin-address        /healthz /readyz /metrics /debug/* (default 127.0.0.1:15014)
  --trust-domain         SPIFFE trust domain of the identities the CA issues (env SKEIN_TRUST_DOMAIN; default cluster.local)
  --token-audience       with --kubernetes: the audience a service-account token must carry to get a certificate
                         (a projected token, as Istio's istio-ca; default skein-ca; "none": any token the API accepts)
  --cluster-domain       the Kubernetes cluster domain in Service names (env SKEIN_CLUSTER_DOMAIN; default cluster.local)
  --debounce-ms          changes within this window after the first are published together (default 100, at most 10000)`;

export function parseHostPort(flag: string, value: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new ConfigError(`${flag}: "${value}" is not HOST:PORT (for example 127.0.0.1:15010)`);
  return Object.freeze({ host: m[1] ?? (m[2] || '0.0.0.0'), port });
}

export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Config {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        registry: { type: 'string' },
        kubernetes: { type: 'boolean', default: false },
        kubeconfig: { type: 'string' },
        namespaces: { type: 'string' },
        'xds-address': { type: 'string', default: env.SKEIN_XDS_ADDRESS ?? '127.0.0.1:15010' },
        'xds-tls-address': { type: 'string', default: env.SKEIN_XDS_TLS_ADDRESS ?? '127.0.0.1:15012' },
        'admin-address': { type: 'string', default: env.SKEIN_ADMIN_ADDRESS ?? '127.0.0.1:15014' },
        'cluster-domain': { type: 'string', default: env.SKEIN_CLUSTER_DOMAIN ?? 'cluster.local' },
        'trust-domain': { type: 'string', default: env.SKEIN_TRUST_DOMAIN ?? 'cluster.local' },
        'token-audience': { type: 'string', default: env.SKEIN_TOKEN_AUDIENCE ?? 'skein-ca' },
        'debounce-ms': { type: 'string', default: '100' },
        'ca-dir': { type: 'string', default: env.SKEIN_CA_DIR ?? '.skein/ca' },
        'ca-root-cert': { type: 'string' },
        'ca-root-key': { type: 'string' },
        'ca-trust-bundle': { type: 'string' },
      },
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${USAGE}`);
  }
  const inCluster = Boolean(env.KUBERNETES_SERVICE_HOST);
  const registryPath = values.registry ?? env.SKEIN_REGISTRY;
  if (registryPath && values.kubernetes) throw new ConfigError('--registry and --kubernetes exclude each other: pick one');
  let registry: RegistrySource;
  if (registryPath) {
    registry = { kind: 'file', path: resolve(registryPath) };
  } else if (values.kubernetes || inCluster) {
    const namespaces = (values.namespaces ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    registry = { kind: 'kubernetes', kubeconfig: values.kubeconfig, namespaces };
  } else {
    throw new ConfigError(
      `no registry: pass --registry FILE (try examples/registry.yaml) or --kubernetes\n\n${USAGE}`,
    );
  }
  const debounceMs = Number(values['debounce-ms']);
  if (!Number.isInteger(debounceMs) || debounceMs < 0 || debounceMs > 10_000) {
    throw new ConfigError(`--debounce-ms: "${values['debounce-ms']}" must be a whole number of milliseconds, 0-10000`);
  }
  const rootCert = values['ca-root-cert'];
  const rootKey = values['ca-root-key'];
  if (Boolean(rootCert) !== Boolean(rootKey)) {
    throw new ConfigError('--ca-root-cert and --ca-root-key go together: pass both, or neither for a self-made root');
  }
  if (values['ca-trust-bundle'] && !rootCert) throw new ConfigError('--ca-trust-bundle needs --ca-root-cert and --ca-root-key');
  const caRoot =
    rootCert && rootKey
      ? Object.freeze({
          certFile: resolve(rootCert),
          keyFile: resolve(rootKey),
          ...(values['ca-trust-bundle'] ? { trustBundleFile: resolve(values['ca-trust-bundle']) } : {}),
        })
      : undefined;
  return Object.freeze({
    caRoot,
    registry: Object.freeze(registry),
    xdsAddress: parseHostPort('--xds-address', values['xds-address']),
    xdsTlsAddress:
      values['xds-tls-address'] === 'none' ? undefined : parseHostPort('--xds-tls-address', values['xds-tls-address']),
    adminAddress: parseHostPort('--admin-address', values['admin-address']),
    clusterDomain: values['cluster-domain'],
    trustDomain: values['trust-domain'],
    tokenAudience: values['token-audience'] === 'none' ? '' : values['token-audience'],
    debounceMs,
    caDir: resolve(values['ca-dir']),
  });
}
