// Builds /debug/config_dump: one scope's resources from the current snapshot as Envoy-style JSON ("@type", Anys decoded).
import type protobuf from 'protobufjs';
import { ADS_ORDER, messageRoot, shortName, TYPE_URL, type TypeUrl } from '../../proto/index.ts';
import type { Snapshot } from '../cache/snapshot.ts';

export interface ConfigDump {
  readonly serial: number;
  readonly scope: string;
  readonly types: Record<string, { typeUrl: TypeUrl; resources: { name: string; version: string; resource: object }[] }>;
}

export type DumpResult =
  | { readonly ok: true; readonly dump: ConfigDump }
  | { readonly ok: false; readonly status: number; readonly error: string; readonly scopes: string[] };

const TYPE_NAMES = new Set(['CDS', 'EDS', 'LDS', 'RDS', 'VHDS']);

/** `type` (CDS, EDS, LDS, RDS, VHDS) and `name` narrow the dump; a missing or unknown scope lists the scopes there are. */
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
    return { ok: false, status: 400, error: `unknown type ${JSON.stringify(type)}: use CDS, EDS, LDS, RDS or VHDS`, scopes };
  }
  const name = query.get('name');
  const types: ConfigDump['types'] = {};
  for (const typeUrl of ADS_ORDER) {
    const short = shortName(typeUrl);
    if (type !== undefined && short !== type) continue;
    // VHDS: the virtual hosts as VHDS clients get them, one resource each (envoy scopes only; their RDS then has
    // `vhds` instead of them: see Snapshot.vhdsScopes).
    const source = typeUrl === TYPE_URL.virtualHost ? snapshot.vhdsScopes?.get(scope) : resources;
    if (source === undefined) continue;
    const list = [...(source.get(typeUrl)?.values() ?? [])]
      .filter((r) => name === null || r.name === name)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((r) => ({ name: r.name, version: r.version, resource: anyToJson(r.any.type_url, r.any.value) }));
    types[short] = { typeUrl, resources: list };
  }
  return { ok: true, dump: { serial: snapshot.serial, scope, types } };
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * An Any as Envoy's config dump shows it: `{"@type": <type URL>, ...fields}` with nested Anys decoded the same way,
 * Durations as "1.5s", wrappers as plain values, Structs as plain JSON, enums by name. Only set fields appear.
 * A type Skein's protos do not hold keeps its bytes in base64 under "value".
 */
export function anyToJson(typeUrl: string, bytes: Uint8Array): { '@type': string; [key: string]: Json } {
  let type: protobuf.Type;
  try {
    type = messageRoot().lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
  } catch {
    return { '@type': typeUrl, value: Buffer.from(bytes).toString('base64') };
  }
  try {
    const decoded = messageJson(type, type.decode(bytes) as unknown as Fields);
    return { '@type': typeUrl, ...(typeof decoded === 'object' && decoded !== null && !Array.isArray(decoded) ? decoded : { value: decoded }) };
  } catch (err) {
    return { '@type': typeUrl, error: `cannot decode: ${(err as Error).message}`, value: Buffer.from(bytes).toString('base64') };
  }
}

type Fields = Record<string, unknown>;

const WRAPPERS = new Set(
  ['Double', 'Float', 'Int64', 'UInt64', 'Int32', 'UInt32', 'Bool', 'String', 'Bytes'].map((w) => `google.protobuf.${w}Value`),
);

/** A decoded message as JSON; set fields only (protobufjs keeps present fields as own properties). */
function messageJson(type: protobuf.Type, msg: Fields): Json {
  const full = type.fullName.slice(1);
  if (full === 'google.protobuf.Any') return anyToJson(String(msg.type_url ?? ''), (msg.value as Uint8Array | undefined) ?? new Uint8Array());
  if (full === 'google.protobuf.Duration') return durationJson(msg);
  if (full === 'google.protobuf.Struct') return structJson(msg);
  if (full === 'google.protobuf.Value') return valueJson(msg);
  if (full === 'google.protobuf.ListValue') return ((msg.values as Fields[] | undefined) ?? []).map(valueJson);
  if (WRAPPERS.has(full)) {
    const field = type.fields.value;
    return field ? scalarJson(field, own(msg, 'value') ? msg.value : field.typeDefault) : null;
  }
  const out: { [key: string]: Json } = {};
  for (const field of type.fieldsArray) {
    if (!own(msg, field.name)) continue;
    const v = msg[field.name];
    if (field.map) {
      const entries = Object.entries((v ?? {}) as Fields);
      if (entries.length > 0) out[field.name] = Object.fromEntries(entries.map(([k, x]) => [k, fieldJson(field, x)]));
    } else if (field.repeated) {
      const list = (v ?? []) as unknown[];
      if (list.length > 0) out[field.name] = list.map((x) => fieldJson(field, x));
    } else out[field.name] = fieldJson(field, v);
  }
  return out;
}

function own(msg: Fields, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(msg, key) && msg[key] !== null && msg[key] !== undefined;
}

function fieldJson(field: protobuf.Field, v: unknown): Json {
  const resolved = field.resolve().resolvedType;
  if (resolved && 'fieldsArray' in resolved) return messageJson(resolved, v as Fields);
  if (resolved && 'valuesById' in resolved) return resolved.valuesById[v as number] ?? (v as number);
  return scalarJson(field, v);
}

function scalarJson(field: protobuf.Field, v: unknown): Json {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (typeof v === 'object' && v !== null) return String(v); // a Long (64-bit), as proto3 JSON writes it
  if (typeof v === 'number' && /64$/.test(field.type)) return String(v);
  return v as Json;
}

/** proto3 JSON's duration form: "1s", "0.250s", "-1.5s". */
function durationJson(msg: Fields): string {
  const seconds = Number(msg.seconds ?? 0);
  const nanos = Number(msg.nanos ?? 0);
  const negative = seconds < 0 || nanos < 0;
  const s = Math.abs(seconds);
  const n = Math.abs(nanos);
  let frac = '';
  if (n > 0) {
    const digits = String(n).padStart(9, '0');
    frac = `.${n % 1_000_000 === 0 ? digits.slice(0, 3) : n % 1_000 === 0 ? digits.slice(0, 6) : digits}`;
  }
  return `${negative ? '-' : ''}${s}${frac}s`;
}

function structJson(msg: Fields): Json {
  const fields = (msg.fields ?? {}) as Record<string, Fields>;
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, valueJson(v)]));
}

function valueJson(v: Fields): Json {
  if (own(v, 'nullValue')) return null;
  if (own(v, 'numberValue')) return v.numberValue as number;
  if (own(v, 'stringValue')) return v.stringValue as string;
  if (own(v, 'boolValue')) return v.boolValue as boolean;
  if (own(v, 'structValue')) return structJson(v.structValue as Fields);
  if (own(v, 'listValue')) return (((v.listValue as Fields).values as Fields[] | undefined) ?? []).map(valueJson);
  return null;
}
