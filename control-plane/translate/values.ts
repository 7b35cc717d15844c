// Small builders for protobuf values every resource uses: Struct metadata with a stable key order, config sources.

type Scalar = string | number;

/** What a Struct field may hold: scalars, booleans, lists and nested objects (undefined members are left out). */
export type StructInput = Scalar | boolean | readonly StructInput[] | { readonly [key: string]: StructInput | undefined };

/** A google.protobuf.Struct with keys sorted, so equal content always encodes to equal bytes. */
export function struct(fields: Readonly<Record<string, StructInput | undefined>>): { fields: Record<string, object> } {
  const out: Record<string, object> = {};
  for (const key of Object.keys(fields).sort()) {
    const v = fields[key];
    if (v === undefined) continue;
    out[key] = structValueOf(v);
  }
  return { fields: out };
}

function structValueOf(v: StructInput): object {
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: (v as readonly StructInput[]).map(structValueOf) } };
  return { structValue: struct(v as Readonly<Record<string, StructInput | undefined>>) };
}

/** `metadata.filter_metadata.skein = {...}`. */
export function skeinMetadata(fields: Readonly<Record<string, StructInput | undefined>>) {
  return { filter_metadata: { skein: struct(fields) } };
}

/** Reads a string or number back out of a decoded Struct (tests and consistency checks). */
export function structValue(s: unknown, key: string): Scalar | undefined {
  const v = (s as { fields?: Record<string, { stringValue?: string; numberValue?: number; kind?: string }> })?.fields?.[key];
  if (!v) return undefined;
  if (v.kind === 'numberValue' || (v.kind === undefined && v.numberValue !== undefined)) return v.numberValue;
  return v.stringValue;
}

/** ADS as the config source, API version 3. */
export const ADS_V3 = Object.freeze({ ads: {}, resource_api_version: 'V3' as const });
