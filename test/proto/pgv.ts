// A generic protoc-gen-validate rule walker: applies every (validate.rules) option of the full Envoy protos to a message.
import { isIP } from 'node:net';
import protobuf from 'protobufjs';
import type { EnvoyProtos } from './envoy-full.ts';

/** One violated rule, with the field path (`filter_chains[0].filters[0].typed_config.stat_prefix`). */
export interface Finding {
  readonly path: string;
  readonly rule: string;
  readonly message: string;
}

type Rules = Record<string, unknown>;
type Obj = Record<string, unknown>;

const INT_KINDS = new Set(['int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'float', 'double']);
const NUMERIC_RULES = new Set(['const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in', 'ignore_empty']);
const WRAPPERS: Readonly<Record<string, string>> = {
  'google.protobuf.DoubleValue': 'double',
  'google.protobuf.FloatValue': 'float',
  'google.protobuf.Int64Value': 'int64',
  'google.protobuf.UInt64Value': 'uint64',
  'google.protobuf.Int32Value': 'int32',
  'google.protobuf.UInt32Value': 'uint32',
  'google.protobuf.BoolValue': 'bool',
  'google.protobuf.StringValue': 'string',
  'google.protobuf.BytesValue': 'bytes',
};
/** protoc-gen-validate's well_known_regex values (strict and, with strict: false, the loose form). */
// PGV's own regexes match control characters on purpose.
/* eslint-disable no-control-regex */
const HEADER_REGEX: Readonly<Record<string, { strict: RegExp; loose: RegExp }>> = {
  HTTP_HEADER_NAME: { strict: /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/, loose: /^[^\u0000\u000A\u000D]*$/ },
  HTTP_HEADER_VALUE: { strict: /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/, loose: /^[^\u0000\u000A\u000D]*$/ },
};
/* eslint-enable no-control-regex */
/** google.protobuf.Duration's valid range, which Envoy also checks when it loads config. */
const MAX_DURATION_SECONDS = 315_576_000_000n;

function rulesOf(options: readonly Obj[] | null | undefined, key: string): unknown {
  for (const o of options ?? []) if (key in o) return o[key];
  return undefined;
}

function isDeprecated(field: protobuf.Field): boolean {
  return rulesOf(field.parsedOptions as unknown as Obj[], 'deprecated') === true || field.options?.deprecated === true;
}

function nanosOf(d: unknown): bigint {
  const v = (d ?? {}) as { seconds?: number | string; nanos?: number };
  return BigInt(v.seconds ?? 0) * 1_000_000_000n + BigInt(v.nanos ?? 0);
}

function show(v: unknown): string {
  return typeof v === 'bigint' ? `${v}` : JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}` : x));
}

/** Walks decoded messages against their descriptors, collecting every violated rule. */
export class PgvWalker {
  readonly findings: Finding[] = [];
  private readonly protos: EnvoyProtos;

  constructor(protos: EnvoyProtos) {
    this.protos = protos;
  }

  private add(path: string, rule: string, message: string): void {
    this.findings.push({ path, rule, message });
  }

  /** Validates the bytes of a message of `typeUrl` (as Envoy does when it receives a resource). */
  validateBytes(typeUrl: string, bytes: Uint8Array, path = ''): void {
    const type = this.protos.typeOf(typeUrl);
    if (!type) return this.add(path, 'any.type_url', `${typeUrl} names no message in Envoy's protos`);
    let obj: Obj;
    try {
      obj = type.toObject(type.decode(bytes), { enums: Number, longs: String, defaults: false, arrays: true, objects: true });
    } catch (err) {
      return this.add(path, 'decode', `cannot decode as ${type.fullName}: ${(err as Error).message}`);
    }
    this.message(type, obj, path);
  }

  private message(type: protobuf.Type, obj: Obj, path: string): void {
    if (type.options?.['(validate.disabled)'] === true || type.options?.['(validate.ignored)'] === true) return;
    if (type.fullName === '.google.protobuf.Duration') this.durationRange(obj, path);
    for (const oneof of type.oneofsArray) {
      if (oneof.options?.['(validate.required)'] !== true) continue;
      if (!oneof.fieldsArray.some((f) => f.name in obj)) {
        this.add(path || type.name, 'oneof.required', `one of ${oneof.fieldsArray.map((f) => f.name).join(', ')} (oneof ${oneof.name}) is required`);
      }
    }
    for (const field of type.fieldsArray) {
      field.resolve();
      const v = obj[field.name];
      // Empty lists and maps are not on the wire: only non-empty ones count as set.
      const present = field.name in obj && !(field.repeated && (v as unknown[]).length === 0) && !(field.map && Object.keys(v as Obj).length === 0);
      const fpath = path ? `${path}.${field.name}` : field.name;
      if (present && isDeprecated(field)) this.add(fpath, 'deprecated', `${type.fullName}.${field.name} is deprecated`);
      // Oneof members (and proto3 optional fields) are checked only when set; other scalars always, as PGV does.
      if (!present && field.partOf) continue;
      this.field(field, present ? obj[field.name] : undefined, fpath);
    }
  }

  private field(field: protobuf.Field, value: unknown, path: string): void {
    const rules = (rulesOf(field.parsedOptions as unknown as Obj[], '(validate.rules)') ?? {}) as Rules;
    if (field.map) return this.mapField(field, (value ?? {}) as Obj, rules, path);
    if (field.repeated) return this.repeatedField(field, (value ?? []) as unknown[], rules, path);
    this.single(field, value, rules, path);
  }

  /** One value of a field (a singular field, a list item or a map value) against its rules. */
  private single(field: protobuf.Field, value: unknown, rules: Rules, path: string): void {
    const type = field.resolvedType;
    if (type instanceof protobuf.Type) return this.messageValue(type, value as Obj | undefined, rules, path);
    if (type instanceof protobuf.Enum) return this.enumValue(type, (value ?? 0) as number, rules, path);
    const kinds = Object.keys(rules);
    for (const kind of kinds) {
      if (kind === 'string') this.stringRules(String(value ?? ''), rules.string as Rules, path);
      else if (kind === 'bytes') this.bytesRules(Buffer.from((value ?? []) as Uint8Array), rules.bytes as Rules, path);
      else if (kind === 'bool') this.boolRules(Boolean(value), rules.bool as Rules, path);
      else if (INT_KINDS.has(kind)) this.numberRules(kind, value ?? 0, rules[kind] as Rules, path);
      else this.add(path, `${kind}`, `the walker does not know rule kind "${kind}" on scalar ${field.type}`);
    }
  }

  private messageValue(type: protobuf.Type, value: Obj | undefined, rules: Rules, path: string): void {
    const full = type.fullName.slice(1);
    for (const kind of Object.keys(rules)) {
      const r = rules[kind] as Rules;
      if (kind === 'message') {
        this.known(r, ['required', 'skip'], 'message', path);
        if (r.required === true && value === undefined) this.add(path, 'message.required', `${full} is required`);
        if (r.skip === true) return;
      } else if (kind === 'duration') this.durationRules(value, r, path);
      else if (kind === 'timestamp') this.timestampRules(value, r, path);
      else if (kind === 'any') this.anyRules(value, r, path);
      else if (WRAPPERS[full] === kind) {
        if (value === undefined) continue;
        const v = value.value;
        if (kind === 'string') this.stringRules(String(v ?? ''), r, `${path}.value`);
        else if (kind === 'bytes') this.bytesRules(Buffer.from((v ?? []) as Uint8Array), r, `${path}.value`);
        else if (kind === 'bool') this.boolRules(Boolean(v), r, `${path}.value`);
        else this.numberRules(kind, v ?? 0, r, `${path}.value`);
      } else this.add(path, kind, `the walker does not know rule kind "${kind}" on ${full}`);
    }
    if (value === undefined) return;
    if (full === 'google.protobuf.Any') return this.anyValue(value, path);
    this.message(type, value, path);
  }

  /** Envoy validates an Any's payload when it instantiates the extension: its type must exist and pass its rules. */
  private anyValue(value: Obj, path: string): void {
    const url = String(value.type_url ?? '');
    const bytes = (value.value ?? new Uint8Array()) as Uint8Array;
    this.validateBytes(url, bytes, path);
  }

  private known(r: Rules, allowed: readonly string[], kind: string, path: string): void {
    for (const k of Object.keys(r)) if (!allowed.includes(k)) this.add(path, `${kind}.${k}`, `the walker does not know rule ${kind}.${k}`);
  }

  private repeatedField(field: protobuf.Field, list: unknown[], rules: Rules, path: string): void {
    const r = rules.repeated as Rules | undefined;
    const otherKinds = Object.keys(rules).filter((k) => k !== 'repeated');
    if (otherKinds.length > 0) this.add(path, otherKinds.join(','), 'non-repeated rules on a repeated field');
    if (r) {
      this.known(r, ['min_items', 'max_items', 'unique', 'items', 'ignore_empty'], 'repeated', path);
      const skip = r.ignore_empty === true && list.length === 0;
      if (!skip && r.min_items !== undefined && list.length < Number(r.min_items)) this.add(path, 'repeated.min_items', `has ${list.length} items, needs at least ${show(r.min_items)}`);
      if (!skip && r.max_items !== undefined && list.length > Number(r.max_items)) this.add(path, 'repeated.max_items', `has ${list.length} items, at most ${show(r.max_items)}`);
      if (r.unique === true) {
        const seen = new Set<string>();
        for (const [i, item] of list.entries()) {
          const key = show(item);
          if (seen.has(key)) this.add(`${path}[${i}]`, 'repeated.unique', `repeats ${key}`);
          seen.add(key);
        }
      }
    }
    const itemRules = (r?.items ?? {}) as Rules;
    for (const [i, item] of list.entries()) this.single(field, item, itemRules, `${path}[${i}]`);
  }

  private mapField(field: protobuf.Field, map: Obj, rules: Rules, path: string): void {
    const r = (rules.map ?? {}) as Rules;
    this.known(r, ['min_pairs', 'max_pairs', 'no_sparse', 'keys', 'values', 'ignore_empty'], 'map', path);
    const keys = Object.keys(map);
    const skip = r.ignore_empty === true && keys.length === 0;
    if (!skip && r.min_pairs !== undefined && keys.length < Number(r.min_pairs)) this.add(path, 'map.min_pairs', `has ${keys.length} entries, needs ${show(r.min_pairs)}`);
    if (!skip && r.max_pairs !== undefined && keys.length > Number(r.max_pairs)) this.add(path, 'map.max_pairs', `has ${keys.length} entries, at most ${show(r.max_pairs)}`);
    const keyRules = (r.keys ?? {}) as Rules;
    for (const key of keys) {
      const kpath = `${path}[${JSON.stringify(key)}]`;
      if (keyRules.string) this.stringRules(key, keyRules.string as Rules, `${kpath}<key>`);
      for (const k of Object.keys(keyRules)) if (k !== 'string') this.add(kpath, `map.keys.${k}`, `the walker does not know key rule ${k}`);
      if (r.no_sparse === true && map[key] === undefined) this.add(kpath, 'map.no_sparse', 'has no value');
      this.single(field, map[key], (r.values ?? {}) as Rules, kpath);
    }
  }

  private enumValue(type: protobuf.Enum, value: number, rules: Rules, path: string): void {
    const name = type.valuesById[value];
    if (name !== undefined && (type.valuesOptions?.[name]?.deprecated === true)) this.add(path, 'deprecated', `${type.fullName}.${name} is deprecated`);
    const r = rules.enum as Rules | undefined;
    for (const k of Object.keys(rules)) if (k !== 'enum') this.add(path, k, `rule kind ${k} on an enum`);
    if (!r) return;
    this.known(r, ['const', 'defined_only', 'in', 'not_in'], 'enum', path);
    if (r.defined_only === true && name === undefined) this.add(path, 'enum.defined_only', `${value} is not a value of ${type.fullName}`);
    if (r.const !== undefined && value !== Number(r.const)) this.add(path, 'enum.const', `must be ${show(r.const)}`);
    if (Array.isArray(r.in) && !r.in.map(Number).includes(value)) this.add(path, 'enum.in', `${value} not in ${show(r.in)}`);
    if (Array.isArray(r.not_in) && r.not_in.map(Number).includes(value)) this.add(path, 'enum.not_in', `${value} is excluded`);
  }

  private numberRules(kind: string, raw: unknown, r: Rules, path: string): void {
    this.known(r, [...NUMERIC_RULES], kind, path);
    const v = Number(raw);
    if (r.ignore_empty === true && v === 0) return;
    const n = (x: unknown) => Number(x);
    if (r.const !== undefined && v !== n(r.const)) this.add(path, `${kind}.const`, `${v} must be ${show(r.const)}`);
    this.range(v, r.gt === undefined ? undefined : n(r.gt), r.gte === undefined ? undefined : n(r.gte), r.lt === undefined ? undefined : n(r.lt), r.lte === undefined ? undefined : n(r.lte), `${kind}`, path);
    if (Array.isArray(r.in) && !r.in.map(n).includes(v)) this.add(path, `${kind}.in`, `${v} not in ${show(r.in)}`);
    if (Array.isArray(r.not_in) && r.not_in.map(n).includes(v)) this.add(path, `${kind}.not_in`, `${v} is excluded`);
  }

  /** PGV's ranges: a lower bound above the upper bound means "outside the range". */
  private range<T extends number | bigint>(v: T, gt: T | undefined, gte: T | undefined, lt: T | undefined, lte: T | undefined, kind: string, path: string): void {
    const low = gt ?? gte;
    const high = lt ?? lte;
    const aboveLow = low === undefined ? true : gt !== undefined ? v > gt : v >= (gte as T);
    const belowHigh = high === undefined ? true : lt !== undefined ? v < lt : v <= (lte as T);
    const exclusive = low !== undefined && high !== undefined && low > high;
    const ok = exclusive ? aboveLow || belowHigh : aboveLow && belowHigh;
    if (ok) return;
    const bounds = [gt !== undefined && `> ${gt}`, gte !== undefined && `>= ${gte}`, lt !== undefined && `< ${lt}`, lte !== undefined && `<= ${lte}`].filter(Boolean).join(exclusive ? ' or ' : ' and ');
    this.add(path, `${kind}.range`, `${v} must be ${bounds}`);
  }

  private stringRules(s: string, r: Rules, path: string): void {
    const allowed = ['const', 'len', 'min_len', 'max_len', 'len_bytes', 'min_bytes', 'max_bytes', 'pattern', 'prefix', 'suffix', 'contains', 'not_contains', 'in', 'not_in', 'email', 'hostname', 'ip', 'ipv4', 'ipv6', 'uri', 'uri_ref', 'address', 'uuid', 'well_known_regex', 'strict', 'ignore_empty'];
    this.known(r, allowed, 'string', path);
    if (r.ignore_empty === true && s === '') return;
    const runes = [...s].length;
    const bytes = Buffer.byteLength(s);
    const fail = (rule: string, what: string) => this.add(path, `string.${rule}`, `${JSON.stringify(s)} ${what}`);
    if (r.const !== undefined && s !== r.const) fail('const', `must be ${show(r.const)}`);
    if (r.len !== undefined && runes !== Number(r.len)) fail('len', `must have ${show(r.len)} characters`);
    if (r.min_len !== undefined && runes < Number(r.min_len)) fail('min_len', `must have at least ${show(r.min_len)} characters`);
    if (r.max_len !== undefined && runes > Number(r.max_len)) fail('max_len', `must have at most ${show(r.max_len)} characters`);
    if (r.len_bytes !== undefined && bytes !== Number(r.len_bytes)) fail('len_bytes', `must be ${show(r.len_bytes)} bytes`);
    if (r.min_bytes !== undefined && bytes < Number(r.min_bytes)) fail('min_bytes', `must be at least ${show(r.min_bytes)} bytes`);
    if (r.max_bytes !== undefined && bytes > Number(r.max_bytes)) fail('max_bytes', `must be at most ${show(r.max_bytes)} bytes`);
    if (typeof r.pattern === 'string' && !re2(r.pattern).test(s)) fail('pattern', `does not match ${r.pattern}`);
    if (typeof r.prefix === 'string' && !s.startsWith(r.prefix)) fail('prefix', `must start with ${show(r.prefix)}`);
    if (typeof r.suffix === 'string' && !s.endsWith(r.suffix)) fail('suffix', `must end with ${show(r.suffix)}`);
    if (typeof r.contains === 'string' && !s.includes(r.contains)) fail('contains', `must contain ${show(r.contains)}`);
    if (typeof r.not_contains === 'string' && s.includes(r.not_contains)) fail('not_contains', `must not contain ${show(r.not_contains)}`);
    if (Array.isArray(r.in) && !r.in.includes(s)) fail('in', `not in ${show(r.in)}`);
    if (Array.isArray(r.not_in) && r.not_in.includes(s)) fail('not_in', 'is excluded');
    if (r.ip === true && isIP(s) === 0) fail('ip', 'is not an IP address');
    if (r.ipv4 === true && isIP(s) !== 4) fail('ipv4', 'is not an IPv4 address');
    if (r.ipv6 === true && isIP(s) !== 6) fail('ipv6', 'is not an IPv6 address');
    if (r.hostname === true && !isHostname(s)) fail('hostname', 'is not a hostname');
    if (r.address === true && isIP(s) === 0 && !isHostname(s)) fail('address', 'is neither an IP nor a hostname');
    if (r.email === true && !/^[^@\s]+@[^@\s]+$/.test(s)) fail('email', 'is not an email address');
    if (r.uuid === true && !/^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$/.test(s)) fail('uuid', 'is not a UUID');
    if (r.uri === true && !URL.canParse(s)) fail('uri', 'is not an absolute URI');
    if (r.uri_ref === true && !URL.canParse(s, 'http://base.invalid/')) fail('uri_ref', 'is not a URI reference');
    if (typeof r.well_known_regex === 'string') {
      const re = HEADER_REGEX[r.well_known_regex];
      if (!re) fail('well_known_regex', `uses unknown regex ${r.well_known_regex}`);
      else if (!(r.strict === false ? re.loose : re.strict).test(s)) fail('well_known_regex', `is not a valid ${r.well_known_regex}`);
    }
  }

  private bytesRules(b: Buffer, r: Rules, path: string): void {
    this.known(r, ['const', 'len', 'min_len', 'max_len', 'pattern', 'prefix', 'suffix', 'contains', 'in', 'not_in', 'ip', 'ipv4', 'ipv6', 'ignore_empty'], 'bytes', path);
    if (r.ignore_empty === true && b.length === 0) return;
    if (r.len !== undefined && b.length !== Number(r.len)) this.add(path, 'bytes.len', `is ${b.length} bytes, must be ${show(r.len)}`);
    if (r.min_len !== undefined && b.length < Number(r.min_len)) this.add(path, 'bytes.min_len', `is ${b.length} bytes, needs ${show(r.min_len)}`);
    if (r.max_len !== undefined && b.length > Number(r.max_len)) this.add(path, 'bytes.max_len', `is ${b.length} bytes, at most ${show(r.max_len)}`);
    if ((r.ipv4 === true && b.length !== 4) || (r.ipv6 === true && b.length !== 16) || (r.ip === true && b.length !== 4 && b.length !== 16)) {
      this.add(path, 'bytes.ip', `is ${b.length} bytes, not an IP address`);
    }
    for (const k of ['const', 'pattern', 'prefix', 'suffix', 'contains', 'in', 'not_in']) {
      if (r[k] !== undefined) this.add(path, `bytes.${k}`, `the walker does not check bytes.${k}`);
    }
  }

  private boolRules(v: boolean, r: Rules, path: string): void {
    this.known(r, ['const'], 'bool', path);
    if (r.const !== undefined && v !== r.const) this.add(path, 'bool.const', `must be ${show(r.const)}`);
  }

  private durationRules(value: Obj | undefined, r: Rules, path: string): void {
    this.known(r, ['required', 'const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in'], 'duration', path);
    if (value === undefined) {
      if (r.required === true) this.add(path, 'duration.required', 'a duration is required');
      return;
    }
    const v = nanosOf(value);
    const b = (x: unknown) => (x === undefined ? undefined : nanosOf(x));
    if (r.const !== undefined && v !== nanosOf(r.const)) this.add(path, 'duration.const', `must be ${show(r.const)}`);
    this.range(v, b(r.gt), b(r.gte), b(r.lt), b(r.lte), 'duration', path);
    if (Array.isArray(r.in) && !r.in.map(nanosOf).includes(v)) this.add(path, 'duration.in', `${v}ns not allowed`);
    if (Array.isArray(r.not_in) && r.not_in.map(nanosOf).includes(v)) this.add(path, 'duration.not_in', `${v}ns is excluded`);
  }

  private durationRange(value: Obj, path: string): void {
    const seconds = BigInt((value.seconds as string | number | undefined) ?? 0);
    const nanos = Number(value.nanos ?? 0);
    const abs = seconds < 0n ? -seconds : seconds;
    if (abs > MAX_DURATION_SECONDS) this.add(path, 'duration.valid', `${seconds}s is outside google.protobuf.Duration's range`);
    if (Math.abs(nanos) > 999_999_999 || (seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0)) {
      this.add(path, 'duration.valid', `nanos ${nanos} is out of range or has the wrong sign`);
    }
  }

  private timestampRules(value: Obj | undefined, r: Rules, path: string): void {
    this.known(r, ['required', 'const', 'lt', 'lte', 'gt', 'gte'], 'timestamp', path);
    if (value === undefined) {
      if (r.required === true) this.add(path, 'timestamp.required', 'a timestamp is required');
      return;
    }
    const b = (x: unknown) => (x === undefined ? undefined : nanosOf(x));
    if (r.const !== undefined && nanosOf(value) !== nanosOf(r.const)) this.add(path, 'timestamp.const', `must be ${show(r.const)}`);
    this.range(nanosOf(value), b(r.gt), b(r.gte), b(r.lt), b(r.lte), 'timestamp', path);
  }

  private anyRules(value: Obj | undefined, r: Rules, path: string): void {
    this.known(r, ['required', 'in', 'not_in'], 'any', path);
    if (value === undefined) {
      if (r.required === true) this.add(path, 'any.required', 'an Any is required');
      return;
    }
    const url = String(value.type_url ?? '');
    if (Array.isArray(r.in) && !r.in.includes(url)) this.add(path, 'any.in', `${url} not in ${show(r.in)}`);
    if (Array.isArray(r.not_in) && r.not_in.includes(url)) this.add(path, 'any.not_in', `${url} is excluded`);
  }
}

/** RFC 1123 hostname, as PGV's `hostname` rule checks it. */
function isHostname(s: string): boolean {
  const h = s.endsWith('.') ? s.slice(0, -1) : s;
  if (h.length === 0 || h.length > 253) return false;
  return h.split('.').every((label) => /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/.test(label));
}

/** RE2 patterns as JavaScript regexes (Unicode mode when the pattern allows it). */
function re2(pattern: string): RegExp {
  try {
    return new RegExp(pattern, 'u');
  } catch {
    return new RegExp(pattern);
  }
}
