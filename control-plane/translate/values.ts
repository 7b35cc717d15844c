// Small builders for protobuf values every resource uses: Struct metadata with a stable key order, config sources.

type Scalar = string | number;

/** A google.protobuf.Struct with keys sorted, so equal content always encodes to equal bytes. */
export function struct(fields: Readonly<Record<string, Scalar | undefined>>): { fields: Record<string, object> } {
  const out: Record<string, object> = {};
  for (const key of Object.keys(fields).sort()) {
    const v = fields[key];
    if (v === undefined) continue;
    out[key] = typeof v === 'number' ? { numberValue: v } : { stringValue: v };
  }
  return { fields: out };
}

/** `metadata.filter_metadata.skein = {...}`. */
export function skeinMetadata(fields: Readonly<Record<string, Scalar | undefined>>) {
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

/** ADS as gRPC xDS clients take it in an api_listener's RDS. */
export const ADS_ONLY = Object.freeze({ ads: {} });
