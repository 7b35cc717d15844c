// Our sidecar pair for the proxy benchmark: `skein control-plane` on a registry file plus client and server `skein sidecar`s.
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dump } from 'js-yaml';
import { PinnedProcess, freePort, waitForHttp, waitForPort } from './pinned-process.ts';

/** The checkout whose `skein` runs; SKEIN_BENCH_REPO points at another (e.g. a scratch copy with an experiment). */
export const REPO_ROOT = process.env.SKEIN_BENCH_REPO?.replace(/\/?$/, '/') ?? fileURLToPath(new URL('../../../', import.meta.url));
/** The `skein` entry point; SKEIN_BENCH_CLI runs another build of it (e.g. ahead-of-time compiled JavaScript). */
export const SKEIN_CLI = process.env.SKEIN_BENCH_CLI ?? `${REPO_ROOT}cli/skein.ts`;

let mtlsFlag: boolean | undefined;
/** Whether this checkout's `skein sidecar` has the --mtls flag (mutual TLS between sidecars). */
export function sidecarHasMtls(): boolean {
  mtlsFlag ??= execFileSync(process.execPath, [SKEIN_CLI, 'sidecar', '--help'], { cwd: REPO_ROOT, encoding: 'utf8' }).includes('--mtls');
  return mtlsFlag;
}

/** The CA side of mutual TLS: where sidecars get certificates and the root that signs the control plane's. */
export interface MeshCa {
  readonly caAddress: string;
  readonly caRootFile: string;
  readonly caDir: string;
}

export function skeinAvailable(): boolean {
  return existsSync(SKEIN_CLI) && (process.env.SKEIN_BENCH_CLI !== undefined || (existsSync(`${REPO_ROOT}sidecar/main.ts`) && existsSync(`${REPO_ROOT}control-plane/main.ts`)));
}

/** The registry for the pair: Service bench.default → one endpoint (the app) whose pod runs a sidecar on inboundPort. */
export function benchRegistry(o: { appIp: string; appPort: number; inboundPort: number }): string {
  const labels = { app: 'bench' };
  const docs = [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'bench', namespace: 'default', labels },
      spec: { clusterIP: '10.96.200.1', selector: labels, ports: [{ name: 'http', port: 80, targetPort: o.appPort, protocol: 'TCP' }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'bench-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'bench' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: o.appPort, protocol: 'TCP' }],
      endpoints: [
        {
          addresses: [o.appIp],
          conditions: { ready: true, serving: true, terminating: false },
          targetRef: { kind: 'Pod', name: 'bench-server', namespace: 'default' },
        },
      ],
    },
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'bench-server', namespace: 'default', labels, annotations: { 'skein.dev/inbound-port': String(o.inboundPort) } },
      spec: { serviceAccountName: 'bench-server', containers: [{ name: 'app', image: 'bench:1' }] },
      status: { phase: 'Running', podIP: o.appIp },
    },
  ];
  return docs.map((d) => dump(d, { noRefs: true })).join('---\n');
}

/** `skein control-plane --registry FILE` on free loopback ports, plaintext xDS only. */
export class ControlPlane {
  readonly proc: PinnedProcess;
  readonly xds: string;
  readonly admin: string;
  /** Set when started with mTLS (CertificateService over TLS). */
  readonly ca: MeshCa | undefined;
  private constructor(proc: PinnedProcess, xds: string, admin: string, ca: MeshCa | undefined) {
    this.proc = proc;
    this.xds = xds;
    this.admin = admin;
    this.ca = ca;
  }

  static async start(registryFile: string, dir: string, cpus: string | undefined, mtls = false): Promise<ControlPlane> {
    const xdsPort = await freePort();
    const adminPort = await freePort();
    const tlsPort = mtls ? await freePort() : 0;
    const caDir = join(dir, 'ca');
    const args = [
      SKEIN_CLI,
      'control-plane',
      '--registry',
      registryFile,
      '--xds-address',
      `127.0.0.1:${xdsPort}`,
      '--admin-address',
      `127.0.0.1:${adminPort}`,
      '--xds-tls-address',
      mtls ? `127.0.0.1:${tlsPort}` : 'none',
      '--ca-dir',
      caDir,
    ];
    const proc = new PinnedProcess('control-plane', process.execPath, args, { cpus, cwd: REPO_ROOT });
    const ca = mtls ? { caAddress: `127.0.0.1:${tlsPort}`, caRootFile: join(caDir, 'root-cert.pem'), caDir } : undefined;
    const cp = new ControlPlane(proc, `127.0.0.1:${xdsPort}`, `http://127.0.0.1:${adminPort}`, ca);
    await waitForHttp(proc, `${cp.admin}/readyz`, (s) => s === 200, 60_000);
    return cp;
  }

  async stop(): Promise<void> {
    await this.proc.stop();
  }
}

export interface SidecarSpec {
  readonly name: string;
  readonly pod: string;
  readonly namespace: string;
  readonly ip: string;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly appPorts?: readonly number[];
  readonly serviceAccount?: string;
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/x']. */
  readonly nodeFlags?: readonly string[];
}

export class Sidecar {
  readonly proc: PinnedProcess;
  readonly spec: SidecarSpec;
  readonly admin: string;
  private constructor(proc: PinnedProcess, spec: SidecarSpec, admin: string) {
    this.proc = proc;
    this.spec = spec;
    this.admin = admin;
  }

  /** `ca` set: mutual TLS with a token from `skein token`; unset: `--mtls off` where the sidecar has that flag. */
  static async start(spec: SidecarSpec, controlPlane: string, cpus: string | undefined, ca?: MeshCa): Promise<Sidecar> {
    const adminPort = await freePort();
    const serviceAccount = spec.serviceAccount ?? 'default';
    let tlsArgs: string[] = [];
    if (ca !== undefined) {
      const token = execFileSync(
        process.execPath,
        [SKEIN_CLI, 'token', '--namespace', spec.namespace, '--service-account', serviceAccount, '--ca-dir', ca.caDir],
        { cwd: REPO_ROOT, encoding: 'utf8' },
      ).trim();
      const tokenFile = join(ca.caDir, `${spec.name}.token`);
      writeFileSync(tokenFile, token, { mode: 0o600 });
      tlsArgs = ['--mtls', 'on', '--token-file', tokenFile, '--ca-address', ca.caAddress, '--ca-root-file', ca.caRootFile];
    } else if (sidecarHasMtls()) tlsArgs = ['--mtls', 'off'];
    const args = [
      ...(spec.nodeFlags ?? []),
      SKEIN_CLI,
      'sidecar',
      '--control-plane',
      controlPlane,
      '--pod',
      spec.pod,
      '--namespace',
      spec.namespace,
      '--service-account',
      serviceAccount,
      ...tlsArgs,
      '--ip',
      spec.ip,
      '--outbound-address',
      `${spec.ip}:${spec.outboundPort}`,
      '--inbound-address',
      `${spec.ip}:${spec.inboundPort}`,
      '--admin-address',
      `127.0.0.1:${adminPort}`,
      ...(spec.appPorts ?? []).flatMap((p) => ['--app-port', String(p)]),
    ];
    const proc = new PinnedProcess(`sidecar ${spec.name}`, process.execPath, args, { cpus, cwd: REPO_ROOT });
    const sc = new Sidecar(proc, spec, `http://127.0.0.1:${adminPort}`);
    await waitForPort(proc, spec.ip, spec.outboundPort, 30_000);
    await waitForHttp(proc, `${sc.admin}/ready`, (s) => s === 200, 60_000);
    return sc;
  }

  /** Clusters the sidecar holds (admin /clusters?format=json). */
  async clusterCount(): Promise<number> {
    const res = await fetch(`${this.admin}/clusters?format=json`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { clusters?: unknown[] };
    return body.clusters?.length ?? 0;
  }

  /**
   * Sums of metrics from /stats/prometheus over their label sets. A spec is a metric name, optionally followed by
   * `{label="value",...}` that a series' labels must contain, e.g. `skein_tls_handshakes_total{direction="outbound"}`.
   */
  async counters(specs: readonly string[]): Promise<Record<string, number>> {
    const res = await fetch(`${this.admin}/stats/prometheus`, { signal: AbortSignal.timeout(10_000) });
    return sumSeries(await res.text(), specs);
  }

  async stop(): Promise<void> {
    await this.proc.stop(8000);
  }
}

export interface SidecarPair {
  readonly controlPlane: ControlPlane;
  readonly client: Sidecar;
  readonly server: Sidecar;
  /** Where the load generator sends (the client sidecar's outbound listener). */
  readonly entry: { host: string; port: number };
  stop(): Promise<void>;
}

/** Starts the control plane and both sidecars; the app (already listening on appIp:appPort) sits behind the server one. */
export async function startSidecarPair(o: {
  dir: string;
  appIp: string;
  appPort: number;
  clientIp: string;
  cpus: string | undefined;
  /** Node flags per sidecar (e.g. --cpu-prof for profiling). */
  nodeFlags?: { readonly client?: readonly string[]; readonly server?: readonly string[] };
  /** CPUs per sidecar when they differ from `cpus` (profiling one sidecar alone on a core). */
  sidecarCpus?: { readonly client?: string; readonly server?: string };
  /** Mutual TLS between the sidecars (the control plane runs its CA). */
  mtls?: boolean;
}): Promise<SidecarPair> {
  const inboundPort = await freePort(o.appIp);
  const registry = join(o.dir, 'registry.yaml');
  writeFileSync(registry, benchRegistry({ appIp: o.appIp, appPort: o.appPort, inboundPort }));
  const controlPlane = await ControlPlane.start(registry, o.dir, o.cpus, o.mtls === true);
  const started: Sidecar[] = [];
  try {
    const server = await Sidecar.start(
      {
        name: 'server',
        pod: 'bench-server',
        namespace: 'default',
        ip: o.appIp,
        outboundPort: await freePort(o.appIp),
        inboundPort,
        appPorts: [o.appPort],
        serviceAccount: 'bench-server',
        nodeFlags: o.nodeFlags?.server,
      },
      controlPlane.xds,
      o.sidecarCpus?.server ?? o.cpus,
      controlPlane.ca,
    );
    started.push(server);
    const clientOutbound = await freePort(o.clientIp);
    const client = await Sidecar.start(
      {
        name: 'client',
        pod: 'bench-client',
        namespace: 'default',
        ip: o.clientIp,
        outboundPort: clientOutbound,
        inboundPort: await freePort(o.clientIp),
        serviceAccount: 'bench-client',
        nodeFlags: o.nodeFlags?.client,
      },
      controlPlane.xds,
      o.sidecarCpus?.client ?? o.cpus,
      controlPlane.ca,
    );
    started.push(client);
    return {
      controlPlane,
      client,
      server,
      entry: { host: o.clientIp, port: clientOutbound },
      async stop() {
        await Promise.all([client.stop(), server.stop()]);
        await controlPlane.stop();
      },
    };
  } catch (err) {
    await Promise.all(started.map((s) => s.stop()));
    await controlPlane.stop();
    throw err;
  }
}

/** Sums Prometheus text series matching each spec (see Sidecar.counters). */
export function sumSeries(text: string, specs: readonly string[]): Record<string, number> {
  const wanted = specs.map((spec) => {
    const b = spec.indexOf('{');
    return { spec, name: b < 0 ? spec : spec.slice(0, b), labels: b < 0 ? [] : spec.slice(b + 1, -1).split(',').filter(Boolean) };
  });
  const out: Record<string, number> = Object.fromEntries(specs.map((s) => [s, 0]));
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    for (const w of wanted) {
      if (w.name === m[1] && w.labels.every((l) => (m[2] ?? '').includes(l))) out[w.spec] = (out[w.spec] ?? 0) + Number(m[3]);
    }
  }
  return out;
}
