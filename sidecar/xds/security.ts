// Decodes a cluster's security metadata (skein.identities, skein.mtls_mode, skein.authz) with field paths.
import type { AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource, MtlsMode } from './model.ts';
import type { Problems } from './fields.ts';

/** A decoded google.protobuf.Value (oneofs as `kind`, camelCase members), nested values included. */
interface AnyValue {
  readonly kind?: string;
  readonly stringValue?: string;
  readonly numberValue?: number;
  readonly boolValue?: boolean;
  readonly listValue?: { readonly values?: readonly AnyValue[] };
  readonly structValue?: { readonly fields?: Readonly<Record<string, AnyValue>> };
}

type Plain = string | number | boolean | null | Plain[] | { [key: string]: Plain };

/** A protobuf Value as plain JSON. */
export function plainValue(v: AnyValue | undefined): Plain {
  if (!v) return null;
  const kind = v.kind ?? Object.keys(v).find((k) => k.endsWith('Value'));
  switch (kind) {
    case 'stringValue':
      return v.stringValue ?? '';
    case 'numberValue':
      return v.numberValue ?? 0;
    case 'boolValue':
      return v.boolValue ?? false;
    case 'listValue':
      return (v.listValue?.values ?? []).map(plainValue);
    case 'structValue': {
      const out: { [key: string]: Plain } = {};
      for (const [k, f] of Object.entries(v.structValue?.fields ?? {})) out[k] = plainValue(f);
      return out;
    }
    default:
      return null;
  }
}

function isObject(p: Plain): p is { [key: string]: Plain } {
  return typeof p === 'object' && p !== null && !Array.isArray(p);
}

/** A list of strings; reports anything else. */
function stringList(p: Plain | undefined, path: string, problems: Problems): string[] | undefined {
  if (p === undefined || p === null) return undefined;
  if (!Array.isArray(p) || p.some((x) => typeof x !== 'string')) {
    problems.add(path, 'must be a list of strings');
    return undefined;
  }
  return p as string[];
}

function objectList(p: Plain | undefined, path: string, problems: Problems): { [key: string]: Plain }[] {
  if (p === undefined || p === null) return [];
  if (!Array.isArray(p) || p.some((x) => !isObject(x))) {
    problems.add(path, 'must be a list of objects');
    return [];
  }
  return p as { [key: string]: Plain }[];
}

function decodeSource(o: { [key: string]: Plain }, path: string, problems: Problems): AuthzSource {
  const principals = stringList(o['principals'], `${path}.principals`, problems);
  const namespaces = stringList(o['namespaces'], `${path}.namespaces`, problems);
  return { ...(principals ? { principals } : {}), ...(namespaces ? { namespaces } : {}) };
}

function decodeOperation(o: { [key: string]: Plain }, path: string, problems: Problems): AuthzOperation {
  const methods = stringList(o['methods'], `${path}.methods`, problems)?.map((m) => m.toUpperCase());
  const paths = stringList(o['paths'], `${path}.paths`, problems);
  return { ...(methods ? { methods } : {}), ...(paths ? { paths } : {}) };
}

function decodeRules(p: Plain | undefined, path: string, problems: Problems): AuthzRule[] {
  return objectList(p, path, problems).map((r, i) => ({
    from: objectList(r['from'], `${path}[${i}].from`, problems).map((s, j) => decodeSource(s, `${path}[${i}].from[${j}]`, problems)),
    to: objectList(r['to'], `${path}[${i}].to`, problems).map((o, j) => decodeOperation(o, `${path}[${i}].to[${j}]`, problems)),
  }));
}

export interface ClusterSecurity {
  identities?: readonly string[];
  mtlsMode?: MtlsMode;
  authz?: AuthzPolicy;
}

/**
 * Reads identities, mtls_mode and authz from `metadata.filter_metadata.skein`. `authz` may be a Struct or a string
 * holding the same JSON. Every problem is reported under `path`.
 */
export function decodeClusterSecurity(
  fields: Readonly<Record<string, AnyValue>>,
  path: string,
  problems: Problems,
): ClusterSecurity {
  const out: ClusterSecurity = {};
  const ids = fields['identities'];
  if (ids && ids.kind !== 'nullValue') {
    const list = stringList(plainValue(ids), `${path}.identities`, problems);
    if (list) {
      const bad = list.find((id) => !id.startsWith('spiffe://'));
      if (bad !== undefined) problems.add(`${path}.identities`, `${JSON.stringify(bad)} is not a spiffe:// ID`);
      else out.identities = [...new Set(list)].sort();
    }
  }
  const mode = fields['mtls_mode'];
  if (mode && mode.kind !== 'nullValue') {
    const m = plainValue(mode);
    if (m === 'STRICT' || m === 'PERMISSIVE') out.mtlsMode = m;
    else problems.add(`${path}.mtls_mode`, `${JSON.stringify(m)} is not STRICT or PERMISSIVE`);
  }
  const authz = fields['authz'];
  if (authz && authz.kind !== 'nullValue') {
    let p = plainValue(authz);
    if (typeof p === 'string') {
      try {
        p = JSON.parse(p) as Plain;
      } catch {
        problems.add(`${path}.authz`, 'is a string but not JSON');
        return out;
      }
    }
    if (!isObject(p)) {
      problems.add(`${path}.authz`, 'must be an object {deny, allow}');
      return out;
    }
    const deny = decodeRules(p['deny'], `${path}.authz.deny`, problems);
    const hasAllow = p['allow'] !== undefined && p['allow'] !== null;
    const allow = hasAllow ? decodeRules(p['allow'], `${path}.authz.allow`, problems) : undefined;
    out.authz = allow ? { deny, allow } : { deny };
  }
  return out;
}
