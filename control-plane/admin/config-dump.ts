// Builds /debug/config_dump: one scope's resources from the current snapshot as JSON, with their versions.
import { ADS_ORDER, shortName, type TypeUrl } from '../../proto/index.ts';
import type { Snapshot } from '../cache/snapshot.ts';

export interface ConfigDump {
  readonly serial: number;
  readonly scope: string;
  readonly types: Record<string, { typeUrl: TypeUrl; resources: { name: string; version: string; resource: object }[] }>;
}

export type DumpResult =
  | { readonly ok: true; readonly dump: ConfigDump }
  | { readonly ok: false; readonly status: number; readonly error: string; readonly scopes: string[] };

const TYPE_NAMES = new Set(['CDS', 'EDS', 'LDS', 'RDS']);

/** `type` (CDS, EDS, LDS, RDS) and `name` narrow the dump; a missing or unknown scope lists the scopes there are. */
export function configDump(snapshot: Snapshot, query: URLSearchParams): DumpResult {
  const scopes = [...snapshot.scopes.keys()].sort();
  const scope = query.get('scope');
  if (scope === null || scope === '') {
    return { ok: false, status: 400, error: 'pass ?scope=<scope>, one of the scopes listed', scopes };
  }
  const resources = snapshot.scopes.get(scope);
  if (!resources) {
    return { ok: false, status: 404, error: `no scope ${JSON.stringify(scope)} in snapshot ${snapshot.serial}`, scopes };
  }
  const type = query.get('type')?.toUpperCase();
  if (type !== undefined && !TYPE_NAMES.has(type)) {
    return { ok: false, status: 400, error: `unknown type ${JSON.stringify(type)}: use CDS, EDS, LDS or RDS`, scopes };
  }
  const name = query.get('name');
  const types: ConfigDump['types'] = {};
  for (const typeUrl of ADS_ORDER) {
    const short = shortName(typeUrl);
    if (type !== undefined && short !== type) continue;
    const list = [...(resources.get(typeUrl)?.values() ?? [])]
      .filter((r) => name === null || r.name === name)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((r) => ({ name: r.name, version: r.version, resource: r.message }));
    types[short] = { typeUrl, resources: list };
  }
  return { ok: true, dump: { serial: snapshot.serial, scope, types } };
}
