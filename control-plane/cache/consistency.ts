// Whole-snapshot consistency check: every EDS cluster has a CLA, routes (and VHDS vhosts) and TCP proxies name clusters, listeners tables.
import { EXTENSION_TYPE_URL, TYPE_URL, unpack } from '../../proto/index.ts';
import { clustersOfRoutes } from '../translate/route.ts';
import { runNow, type Sliced } from '../slices.ts';
import type { Snapshot } from './snapshot.ts';

interface AnyLike {
  type_url: string;
  value: Uint8Array;
}

/** Walks every resource of every scope (for the first publish and for tests); returns what is wrong, empty if nothing. */
export function checkSnapshot(snapshot: Snapshot): string[] {
  return runNow(checkSnapshotSteps(snapshot));
}

/** How many resources the check walks between two points where it may pause. */
const STEP = 512;

/** checkSnapshot as sliced work (slices.ts): at 30 000 Services the walk takes seconds. */
export function* checkSnapshotSteps(snapshot: Snapshot): Sliced<string[]> {
  const problems: string[] = [];
  let n = 0;
  for (const [scope, types] of snapshot.scopes) {
    const cds = types.get(TYPE_URL.cluster) ?? new Map();
    const eds = types.get(TYPE_URL.endpoint) ?? new Map();
    const lds = types.get(TYPE_URL.listener) ?? new Map();
    const rds = types.get(TYPE_URL.route) ?? new Map();
    for (const [name, r] of cds) {
      const c = r.message as { type?: string; eds_cluster_config?: { service_name?: string } };
      const edsName = c.eds_cluster_config?.service_name || name;
      if (c.type === 'EDS' && !eds.has(edsName)) problems.push(`${scope}: EDS cluster ${name} has no ClusterLoadAssignment`);
      if (++n % STEP === 0) yield;
    }
    for (const [name, r] of rds) {
      const table = r.message as { virtual_hosts?: { routes?: object[] }[] };
      for (const vh of table.virtual_hosts ?? []) {
        for (const cluster of clustersOfRoutes(vh.routes)) {
          if (!cds.has(cluster)) problems.push(`${scope}: route table ${name} names missing cluster ${cluster}`);
        }
        if (++n % STEP === 0) yield;
      }
    }
    for (const [name, r] of lds) {
      const l = r.message as {
        filter_chains?: { filters?: { typed_config?: AnyLike }[] }[];
        api_listener?: { api_listener?: AnyLike };
      };
      const configs: AnyLike[] = [];
      for (const chain of l.filter_chains ?? []) for (const f of chain.filters ?? []) if (f.typed_config) configs.push(f.typed_config);
      if (l.api_listener?.api_listener) configs.push(l.api_listener.api_listener);
      for (const any of configs) {
        if (any.type_url === EXTENSION_TYPE_URL.httpConnectionManager) {
          const route = unpack<{ rds?: { route_config_name?: string } }>(any).rds?.route_config_name;
          if (route && !rds.has(route)) problems.push(`${scope}: listener ${name} names missing route table ${route}`);
        } else if (any.type_url === EXTENSION_TYPE_URL.tcpProxy) {
          const cluster = unpack<{ cluster?: string }>(any).cluster;
          if (!cluster || !cds.has(cluster)) problems.push(`${scope}: listener ${name} names missing cluster ${cluster}`);
        }
      }
      if (++n % STEP === 0) yield;
    }
  }
  // VHDS forms: each VirtualHost's routes name published clusters too.
  for (const [scope, types] of snapshot.vhdsScopes ?? []) {
    const cds = types.get(TYPE_URL.cluster) ?? new Map();
    for (const [name, r] of types.get(TYPE_URL.virtualHost) ?? []) {
      for (const cluster of clustersOfRoutes((r.message as { routes?: object[] }).routes)) {
        if (!cds.has(cluster)) problems.push(`${scope}: virtual host ${name} names missing cluster ${cluster}`);
      }
      if (++n % STEP === 0) yield;
    }
  }
  return problems;
}
