// `skein control-plane`: wires registry → translation cache → ADS server and admin server; nothing else.
import { type ControlPlaneCache, createSnapshotCache } from './cache/index.ts';
import { USAGE, parseConfig } from './config.ts';
import { ConfigProblems } from './admin/problems.ts';
import { startAdminServer, snapshotReadiness } from './admin/server.ts';
import { openMeshCa } from './ca/bootstrap.ts';
import { addCertificateService } from './ca/index.ts';
import { CertificateLedger, requesterOf } from './ca/ledger.ts';
import { Registry as MetricsRegistry } from 'prom-client';
import * as grpc from '@grpc/grpc-js';
import { logger } from './log.ts';
import { createRegistry } from './registry/registry.ts';
import { limitYoungGeneration, paceYoungGcByReads } from './heap.ts';
import { StatusRegistry, startXdsServer } from './xds/index.ts';

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

export async function runControlPlane(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const config = parseConfig(argv);
  limitYoungGeneration();
  paceYoungGcByReads();
  const registry = await createRegistry(config.registry);
  // Config problems (the registry's, and translation problems) are logged as they appear and clear, and exported.
  const problemMetrics = new MetricsRegistry();
  const problems = new ConfigProblems(problemMetrics, () => registry.rejected ?? 0);
  registry.onProblem((problem) => {
    log.error('registry problem; still serving the last good state', { ...problem });
    problems.registryProblem(problem.code);
  });
  const status = new StatusRegistry();
  const caMetrics = new MetricsRegistry();
  const metricRegistries: MetricsRegistry[] = [caMetrics, problemMetrics];
  /** Set once the first snapshot is built; the admin server reads it on each request. */
  const made: { cache?: ControlPlaneCache } = {};
  let ledger: CertificateLedger | undefined;
  let registryLoaded = false;
  /** Set once every xDS port listens: ready means a proxy can connect. */
  let serving = false;
  const adminHost = config.adminAddress.host;
  if (!(adminHost === 'localhost' || adminHost === '::1' || /^127\./.test(adminHost))) {
    // In a cluster Prometheus scrapes it from outside the pod, so it is allowed; but /debug/config_dump shows every
    // Service, endpoint and policy the control plane knows to whoever reaches the port.
    log.warn('the admin server listens beyond loopback: /metrics and /debug/* (the whole mesh config) are readable by anyone who reaches it', {
      address: `${adminHost}:${config.adminAddress.port}`,
    });
  }
  // First, so that health checks are answered (/healthz 200, /readyz 503 saying why) while a large registry loads
  // and its first snapshot builds (in slices: at 30 000 Services that takes about 25 s).
  const admin = await startAdminServer({
    host: config.adminAddress.host,
    port: config.adminAddress.port,
    status,
    cache: () => made.cache,
    registries: () => metricRegistries,
    certificateOf: (nodeId) => ledger?.lookup(nodeId),
    readiness: snapshotReadiness(() => registryLoaded, () => made.cache, () => serving),
  });
  await registry.start();
  registryLoaded = true;
  log.info('registry loaded', { source: registry.description, services: registry.state().services.size });

  const built = createSnapshotCache(registry, {
    clusterDomain: config.clusterDomain,
    trustDomain: config.trustDomain,
    debounceMs: config.debounceMs,
    // The API server always has the Pods: an endpoint whose Pod is missing waits for it (a file may not list Pods).
    holdEndpointsWithoutPod: config.registry.kind === 'kubernetes',
    sliceInitial: true,
  });
  await built.whenBuilt();
  made.cache = built;
  log.info('first snapshot built', { ms: Math.round(built.lastPublish().buildMs), serial: built.current().serial });
  const xds = await startXdsServer({ host: config.xdsAddress.host, port: config.xdsAddress.port }, built, status);
  metricRegistries.unshift(xds.metrics.registry);
  const servers = [xds];
  let stopCa = () => {};
  if (config.xdsTlsAddress) {
    const tlsHost = config.xdsTlsAddress.host;
    const { loadKubeConfig } =
      config.registry.kind === 'kubernetes' ? await import('./registry/kubernetes.ts') : { loadKubeConfig: undefined };
    const kubeconfigFile = config.registry.kind === 'kubernetes' ? config.registry.kubeconfig : undefined;
    const ca = await openMeshCa({
      trustDomain: config.trustDomain,
      caDir: config.caDir,
      providedRoot: config.caRoot,
      kubeconfig: loadKubeConfig ? { load: () => loadKubeConfig(kubeconfigFile) } : undefined,
      tokenAudience: config.tokenAudience,
      dnsNames: ['localhost', 'skein-control-plane.skein-system.svc', `skein-control-plane.skein-system.svc.${config.clusterDomain}`],
      ipAddresses: ['127.0.0.1', ...(/^[\d.]+$/.test(tlsHost) && tlsHost !== '0.0.0.0' && tlsHost !== '127.0.0.1' ? [tlsHost] : [])],
    });
    stopCa = () => ca.serving.stop();
    const caLedger = new CertificateLedger(caMetrics, ca.authority);
    ledger = caLedger;
    const xdsTls = await startXdsServer(
      {
        host: tlsHost,
        port: config.xdsTlsAddress.port,
        credentials: ca.serving.credentials(),
        metrics: xds.metrics,
        extraServices: (server) =>
          addCertificateService(server, {
            authority: ca.authority,
            verifier: ca.verifier,
            onIssued: (issued, identity, requester) => caLedger.issued(issued, requesterOf(requester, identity.namespace)),
            onRefused: (code) => caLedger.refused(`refused_${code}`),
          }),
      },
      built,
      status,
    );
    servers.push(xdsTls);
    log.info('certificate authority ready', { trustDomain: config.trustDomain, tls: xdsTls.address });
  }
  problems.update(built.translationProblems());
  const stopProblems = built.subscribe(() => problems.update(built.translationProblems()));
  serving = true;
  log.info('serving', { xds: servers.map((s) => s.address), admin: admin.url });

  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info('shutting down');
  stopProblems();
  await Promise.allSettled([...servers.map((s) => s.close()), admin.close()]);
  stopCa();
  built.close();
  await registry.stop();
  return 0;
}
