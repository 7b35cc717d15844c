// Helpers shared by the xDS resource validators: an error collector with field paths, durations, Struct metadata.
import { isIP } from 'node:net';

/** Collects every problem of one resource as `field.path: what is wrong`, so one NACK can list them all. */
export class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    const line = path ? `${path}: ${message}` : message;
    if (!this.list.includes(line)) this.list.push(line);
  }
  get empty(): boolean {
    return this.list.length === 0;
  }
}

export interface DurationLike {
  readonly seconds: string | number;
  readonly nanos: number;
}

/**
 * The longest timer Node runs (2^31 - 1 ms, about 24.8 days): a longer one fires after 1 ms, which turned a
 * `skein.dev/timeout: 600h` into an immediate 504 on every request. Longer durations are held to it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A google.protobuf.Duration in milliseconds (at most MAX_TIMER_MS); undefined when unset; reports negative values. */
export function durationMs(d: DurationLike | null | undefined, path: string, problems: Problems): number | undefined {
  if (!d) return undefined;
  const seconds = Number(d.seconds);
  const nanos = d.nanos ?? 0;
  if (!Number.isFinite(seconds) || seconds < 0 || nanos < 0) {
    problems.add(path, 'must not be negative');
    return undefined;
  }
  return Math.min(seconds * 1000 + Math.floor(nanos / 1e6), MAX_TIMER_MS);
}

export function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

export function isIpAddress(s: string): boolean {
  return isIP(s) !== 0;
}

/** A google.protobuf.Value as decoded with Skein's conversion options (camelCase oneof members). */
export interface StructValue {
  readonly kind?: string;
  readonly stringValue?: string;
  readonly numberValue?: number;
  readonly boolValue?: boolean;
}

export interface StructLike {
  readonly fields: Readonly<Record<string, StructValue>>;
}

export interface MetadataLike {
  readonly filter_metadata: Readonly<Record<string, StructLike>>;
}

/** The fields of `metadata.filter_metadata[key]`, or undefined when that filter has no metadata. */
export function filterMetadata(
  metadata: MetadataLike | null | undefined,
  key: string,
): Readonly<Record<string, StructValue>> | undefined {
  return metadata?.filter_metadata?.[key]?.fields;
}

/** A string field of a Struct; reports a wrong kind. */
export function structString(
  fields: Readonly<Record<string, StructValue>>,
  name: string,
  path: string,
  problems: Problems,
): string | undefined {
  const v = fields[name];
  if (!v || v.kind === 'nullValue') return undefined;
  if (v.kind !== 'stringValue' || typeof v.stringValue !== 'string') {
    problems.add(`${path}.${name}`, 'must be a string');
    return undefined;
  }
  return v.stringValue;
}

/** A numeric field of a Struct (numbers written as strings are accepted too); reports a wrong kind. */
export function structNumber(
  fields: Readonly<Record<string, StructValue>>,
  name: string,
  path: string,
  problems: Problems,
): number | undefined {
  const v = fields[name];
  if (!v || v.kind === 'nullValue') return undefined;
  if (v.kind === 'numberValue' && typeof v.numberValue === 'number') return v.numberValue;
  if (v.kind === 'stringValue' && v.stringValue !== undefined && /^\d+$/.test(v.stringValue)) return Number(v.stringValue);
  problems.add(`${path}.${name}`, 'must be a number');
  return undefined;
}

/** JSON.stringify for names inside messages. */
export function quote(s: string): string {
  return JSON.stringify(s);
}
