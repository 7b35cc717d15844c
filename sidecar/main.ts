// `skein sidecar`: wires config → data plane → xDS client → admin server, and drains on SIGTERM/SIGINT.
import { nodeFs } from './builtins.ts';
import { readFile } from 'node:fs/promises';
import { flushCompileCache } from 'node:module';
import { AdminServer, readinessOf } from './admin/server.ts';
import { type Config, isLoopback, parseConfig, SIDECAR_USAGE, wantsHelp } from './config.ts';
import { ConfigInvalidError } from './errors.ts';
import { parseSpiffeId, registerCertificateMetrics, TlsContexts, WorkloadIdentity } from './tls/index.ts';
import { CONTROL_PLANE_TLS_OPTIONS, controlPlaneChannelCredentials, controlPlaneSpiffeId } from './tls/control-plane-credentials.ts';
import { createDataPlane } from './listeners/index.ts';
import * as grpc from '@grpc/grpc-js';
import { logger } from './log.ts';
import { registerProcessMetrics } from './telemetry/process-metrics.ts';
import { Registry } from './telemetry/prom.ts';
import { XdsClient } from './xds/client.ts';
import { createXdsMetrics } from './xds/metrics.ts';
import { buildNode, nodeId, setCertNotAfter } from './xds/node.ts';
import { ConfigSettler } from './xds/settle.ts';

const log = logger('main');

/**
 * grpc-js prints its own errors on stderr, in another format, and every one that matters also reaches us as an error
 * or a status that we report ourselves (e.g. a port in use). They go to the JSON log at debug (SKEIN_DEBUG=grpc),
 * unless GRPC_VERBOSITY or GRPC_TRACE asks for grpc-js's own output.
 */
if (process.env.GRPC_VERBOSITY === undefined && process.env.GRPC_TRACE === undefined) {
  const grpcLog = logger('grpc');
  grpc.setLogger({ error: (...args: unknown[]) => grpcLog.debug(args.map(String).join(' ')) });
}

export interface SidecarRunOptions {
  /** Environment for flag fallbacks (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Stops the sidecar like SIGTERM when aborted (tests; embedding). */
  readonly signal?: AbortSignal;
  /** Called once everything listens, with the bound ports (useful with port 0). */
  readonly onStarted?: (ports: { admin: number; outbound: number; inbound: number }) => void;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(nodeFs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * Waits for SIGTERM, SIGINT, the abort signal or `quit` (POST /quitquitquit on the admin port); resolves with what
 * stopped us.
 */
function stopRequested(signal: AbortSignal | undefined, quit: AbortSignal): { stop: Promise<string>; release: () => void } {
  let stopped = false;
  let release = (): void => {};
  const stop = new Promise<string>((resolve) => {
    const done = (why: string) => {
      if (stopped) {
        // Kubernetes sends SIGTERM once and SIGKILL after the grace period; a repeat does not cut the drain short.
        log.info('already draining; the signal changes nothing', { signal: why });
        return;
      }
      stopped = true;
      resolve(why);
    };
    const onTerm = () => done('SIGTERM');
    const onInt = () => done('SIGINT');
    const onAbort = () => done('abort');
    const onQuit = () => done('POST /quitquitquit');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    quit.addEventListener('abort', onQuit, { once: true });
    if (signal?.aborted) done('abort');
    else signal?.addEventListener('abort', onAbort, { once: true });
    release = () => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      signal?.removeEventListener('abort', onAbort);
      quit.removeEventListener('abort', onQuit);
    };
  });
  return { stop, release: () => release() };
}

/** Gets the first workload certificate (retrying until `signal` aborts); undefined when mTLS is off. */
async function bootstrapIdentity(config: Config, signal: AbortSignal, onWaiting: (why: string) => void): Promise<WorkloadIdentity | undefined> {
  const m = config.mtls;
  if (!m.enabled) {
    log.warn(
      'MUTUAL TLS IS OFF (--mtls off): this sidecar sends and accepts PLAINTEXT, has no workload identity, and authorization ' +
        'policies see every caller as unauthenticated. Use only for local experiments without a CA.',
    );
    return undefined;
  }
  let caRootPem: string;
  try {
    caRootPem = await readFile(m.caRootFile, 'utf8');
  } catch (err) {
    throw new ConfigInvalidError('--ca-root-file', `cannot read ${m.caRootFile}: ${(err as Error).message}`);
  }
  const caAddress = `${m.caAddress.host.includes(':') ? `[${m.caAddress.host}]` : m.caAddress.host}:${m.caAddress.port}`;
  log.info('requesting the workload certificate', { caAddress, trustDomain: m.trustDomain, tokenFile: m.tokenFile });
  const requester = nodeId({ ip: config.ip, pod: config.pod, namespace: config.namespace, clusterDomain: config.clusterDomain });
  const waiting = `waiting for the workload certificate from the CA at ${caAddress}`;
  onWaiting(waiting);
  return WorkloadIdentity.start({ caAddress, caRootPem, caRootFile: m.caRootFile, trustDomain: m.trustDomain, tokenFile: m.tokenFile, requester }, signal, (error) =>
    onWaiting(`${waiting}: ${error}`),
  );
}

/**
 * The certificate's identity comes from the token; the node announces --namespace and --service-account to the
 * control plane. When they differ, the sidecar would serve as one identity while the mesh expects another: refuse
 * to start and say which is which.
 */
export function checkIdentityMatches(config: Pick<Config, 'namespace' | 'serviceAccount'>, id: string, tokenFile: string): void {
  const parts = parseSpiffeId(id);
  if (parts === undefined || (parts.namespace === config.namespace && parts.serviceAccount === config.serviceAccount)) return;
  throw new ConfigInvalidError(
    '--service-account',
    `the token${tokenFile ? ` in ${tokenFile}` : ''} is for ${parts.namespace}/${parts.serviceAccount} (certificate ${id}), but this sidecar ` +
      `runs as --namespace ${config.namespace} --service-account ${config.serviceAccount}: pass the namespace and service account the ` +
      `token names, or a token for ${config.namespace}/${config.serviceAccount}`,
  );
}

export async function runSidecar(argv: string[], options: SidecarRunOptions = {}): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(`${SIDECAR_USAGE}\n`);
    return 0;
  }
  const config = parseConfig(argv, options.env ?? process.env);
  // Listen for SIGTERM from the start, so a sidecar still waiting for its certificate stops promptly; signals stay
  // ours (a repeat is logged, not fatal) until the drain is over.
  const quit = new AbortController();
  const { stop, release } = stopRequested(options.signal, quit.signal);
  try {
    return await run(config, options, stop, quit);
  } finally {
    release();
  }
}

async function run(config: Config, options: SidecarRunOptions, stop: Promise<string>, quit: AbortController): Promise<number> {
  const registry = new Registry();
  registerProcessMetrics(registry, 'skein_sidecar_');
  const bootstrapAbort = new AbortController();
  void stop.then(() => bootstrapAbort.abort());
  let identity: WorkloadIdentity | undefined;
  let draining = false;
  /** While set, what the sidecar is waiting for (the admin server answers 503 with it); undefined once it runs. */
  let starting: (() => string) | undefined = () => 'starting';
  const admin = new AdminServer({
    host: config.admin.host,
    port: config.admin.port,
    registry,
    starting: () => starting?.(),
    readiness: () => readinessOf(xds.state(), dataPlane.ready(), draining),
    xdsState: () => xds.state(),
    mesh: () => xds.current(),
    clusterStats: () => dataPlane.clusterStats(),
    quit: () => quit.abort(),
    dumpExtras: () => ({
      node: { id: node.id, cluster: node.cluster },
      tcpListeners: dataPlane.tcpListenerStats(),
      tls:
        identity === undefined
          ? { mtls: 'off' }
          : {
              mtls: 'on',
              spiffeId: tls?.spiffeId,
              notAfter: identity.current().notAfter.toISOString(),
              minVersion: config.mtls.enabled ? config.mtls.minTlsVersion : undefined,
              lastError: identity.lastError(),
            },
    }),
  });
  if (!isLoopback(config.admin.host)) {
    log.warn('the admin server listens beyond loopback (--admin-address-unsafe): anyone who reaches it can read /config_dump and stop the sidecar with POST /quitquitquit', {
      address: `${config.admin.host}:${config.admin.port}`,
    });
  }
  // The admin port answers from the start: while the sidecar waits for its certificate, /ready says why (a probe
  // then reads a reason, not "connection refused"), /healthz and /stats/prometheus answer, /quitquitquit stops it.
  await admin.start();
  try {
    identity = await bootstrapIdentity(config, bootstrapAbort.signal, (why) => (starting = () => why));
    starting = () => 'starting the listeners';
  } catch (err) {
    await admin.close();
    if (bootstrapAbort.signal.aborted) {
      log.info('stopped before the workload certificate arrived', { error: (err as Error).message });
      return 0;
    }
    throw err;
  }
  if (identity !== undefined) {
    try {
      checkIdentityMatches(config, identity.current().spiffeId, config.mtls.enabled ? config.mtls.tokenFile : '');
    } catch (err) {
      identity.stop();
      await admin.close();
      throw err;
    }
  }
  const tls =
    identity === undefined ? undefined : new TlsContexts(identity, config.mtls.enabled ? { minVersion: config.mtls.minTlsVersion } : {});
  if (identity !== undefined) registerCertificateMetrics(registry, identity);

  const dataPlane = createDataPlane(
    {
      outbound: config.outbound,
      inbound: config.inbound,
      // Like Istio: inbound traffic reaches the app on the pod IP, so apps bound only to loopback stay private.
      appHost: config.ip,
      appPorts: config.appPorts,
      namespace: config.namespace,
      podIp: config.ip,
      ...(tls !== undefined ? { tls } : {}),
    },
    registry,
  );
  try {
    await dataPlane.start();
  } catch (err) {
    identity?.stop();
    await admin.close();
    throw err;
  }

  const node = buildNode({
    ip: config.ip,
    pod: config.pod,
    namespace: config.namespace,
    serviceAccount: config.serviceAccount,
    inboundPort: dataPlane.ports().inbound,
    clusterDomain: config.clusterDomain,
    version: packageVersion(),
  });
  // The control plane shows each proxy's certificate expiry; after a control-plane restart it learns it from here.
  if (identity !== undefined) {
    setCertNotAfter(node, identity.current().notAfter);
    identity.onRotate((m) => setCertNotAfter(node, m.notAfter));
  }
  const settler = new ConfigSettler();
  const xdsServer = `${config.controlPlane.host.includes(':') ? `[${config.controlPlane.host}]` : config.controlPlane.host}:${config.controlPlane.port}`;
  // --control-plane at the CA's address (the TLS port, 15012) takes xDS over TLS: the control plane's certificate
  // and SPIFFE ID checked, ours presented. Config carries the accepted peer identities and the mTLS mode, so
  // plaintext xDS is for loopback and trusted networks (the plaintext port, 15010).
  const xdsTls = identity !== undefined && config.mtls.enabled && sameHostPort(config.controlPlane, config.mtls.caAddress);
  if (identity !== undefined && config.mtls.enabled) {
    log.info(xdsTls ? 'taking xDS over TLS' : 'taking xDS in plaintext (point --control-plane at the TLS port, the CA address, for TLS)', { controlPlane: xdsServer });
  }
  const xds = new XdsClient({
    server: xdsServer,
    ...(xdsTls && identity !== undefined && config.mtls.enabled
      ? {
          credentials: controlPlaneChannelCredentials(identity, identity.caRootPem(), controlPlaneSpiffeId(config.mtls.trustDomain)),
          channelOptions: CONTROL_PLANE_TLS_OPTIONS,
        }
      : {}),
    node,
    protocol: config.xdsProtocol,
    metrics: createXdsMetrics(registry),
    onConfig: (mesh) => {
      dataPlane.update(mesh);
      settler.changed();
    },
  });

  starting = undefined;
  xds.start();
  const ports = { admin: admin.port, ...dataPlane.ports() };
  const at = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info('sidecar started', {
    node: node.id,
    controlPlane: config.controlPlane,
    mtls: tls === undefined ? 'off' : tls.spiffeId,
    outbound: at(config.outbound.host, ports.outbound),
    inbound: at(config.inbound.host, ports.inbound),
    admin: at(config.admin.host, ports.admin),
  });
  options.onStarted?.(ports);
  // Everything the sidecar runs is loaded: save it to the compile cache (when on), so the next start skips compiling
  // and type stripping (no TypeScript stripper in memory at all).
  flushCompileCache();

  const why = await stop;
  draining = true;
  settler.stop();
  log.info('draining', { reason: why, drainTimeoutMs: config.drainTimeoutMs });
  xds.stop();
  await dataPlane.close(config.drainTimeoutMs);
  await admin.close();
  identity?.stop();
  tls?.close();
  log.info('sidecar stopped', { reason: why });
  return 0;
}

function sameHostPort(a: { host: string; port: number }, b: { host: string; port: number }): boolean {
  return a.port === b.port && a.host.toLowerCase() === b.host.toLowerCase();
}
