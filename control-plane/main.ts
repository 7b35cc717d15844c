// `skein control-plane`: wires registry → translation cache → ADS server and admin server; nothing else.
import { createSnapshotCache } from './cache/index.ts';
import { USAGE, parseConfig } from './config.ts';
import { startAdminServer, snapshotReadiness } from './admin/server.ts';
import { logger } from './log.ts';
import { createRegistry } from './registry/registry.ts';
import { StatusRegistry, startXdsServer } from './xds/index.ts';

const log = logger('main');

export async function runControlPlane(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const config = parseConfig(argv);
  const registry = await createRegistry(config.registry);
  registry.onProblem((problem) => log.error('registry problem; still serving the last good state', { ...problem }));
  let registryLoaded = false;
  await registry.start();
  registryLoaded = true;
  log.info('registry loaded', { source: registry.description, services: registry.state().services.size });

  const cache = createSnapshotCache(registry, { clusterDomain: config.clusterDomain, debounceMs: config.debounceMs });
  const status = new StatusRegistry();
  const xds = await startXdsServer({ host: config.xdsAddress.host, port: config.xdsAddress.port }, cache, status);
  const admin = await startAdminServer({
    host: config.adminAddress.host,
    port: config.adminAddress.port,
    status,
    cache,
    registries: [xds.metrics.registry],
    readiness: snapshotReadiness(() => registryLoaded, cache),
  });
  for (const [service, problems] of cache.translationProblems()) {
    for (const p of problems) log.warn('translation problem', { service, problem: p.message });
  }
  log.info('serving', { xds: xds.address, admin: admin.url });

  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info('shutting down');
  await Promise.allSettled([xds.close(), admin.close()]);
  cache.close();
  await registry.stop();
  return 0;
}
