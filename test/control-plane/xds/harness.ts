// Test harness: an xDS server on an OS-chosen port over a FakeCache, with a log that records what it was told.
import type { AggregatedDiscoveryServiceClient } from '../../../proto/index.ts';
import { startXdsServer, StatusRegistry, type XdsServerHandle, type XdsServerOptions } from '../../../control-plane/xds/index.ts';
import type { LogFields, XdsLog } from '../../../control-plane/xds/log.ts';
import { adsClient } from './ads-client.ts';
import { FakeCache, type Update } from './fake-cache.ts';

export interface LogEntry {
  level: 'warn' | 'error';
  message: string;
  fields: LogFields;
}

export interface Harness {
  cache: FakeCache;
  status: StatusRegistry;
  server: XdsServerHandle;
  logs: LogEntry[];
  client(): AggregatedDiscoveryServiceClient;
  close(): Promise<void>;
}

export async function startHarness(
  initial: Record<string, Update>,
  options: Partial<XdsServerOptions> = {},
): Promise<Harness> {
  const cache = new FakeCache(initial);
  const status = new StatusRegistry();
  const logs: LogEntry[] = [];
  const log: XdsLog = {
    warn: (message, fields) => logs.push({ level: 'warn', message, fields }),
    error: (message, fields) => logs.push({ level: 'error', message, fields }),
  };
  const server = await startXdsServer({ host: '127.0.0.1', port: 0, log, shutdownGraceMs: 500, ...options }, cache, status);
  const clients: AggregatedDiscoveryServiceClient[] = [];
  return {
    cache,
    status,
    server,
    logs,
    client() {
      const c = adsClient(server.address);
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await server.close();
    },
  };
}
