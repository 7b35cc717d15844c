// The Envoy bootstraps the README shows must load in Envoy: every key a field of Envoy's Bootstrap proto (Envoy rejects unknown ones), and their xDS sources consistent.
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { load } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { EnvoyProtos } from './envoy-full.ts';

const README = new URL('../../README.md', import.meta.url);
const protos = new EnvoyProtos(['envoy/config/bootstrap/v3/bootstrap.proto']);

/** The README's YAML blocks that are Envoy bootstraps (they configure `dynamic_resources`), dedented. */
function readmeBootstraps(): { readonly line: number; readonly doc: Record<string, unknown> }[] {
  const lines = readFileSync(README, 'utf8').split('\n');
  const found: { line: number; doc: Record<string, unknown> }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```yaml\s*$/.exec(lines[i] ?? '');
    if (!open) continue;
    const indent = open[1]?.length ?? 0;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j] ?? ''); j++) body.push((lines[j] ?? '').slice(indent));
    const text = body.join('\n');
    if (text.includes('dynamic_resources:')) found.push({ line: i + 1, doc: load(text) as Record<string, unknown> });
    i = j;
  }
  return found;
}

const DURATION = /^-?\d+(\.\d+)?s$/;

/** Every way `value` (at `path`) does not fit `type` as Envoy reads YAML/JSON config: unknown fields, bad enums, unresolvable Anys. */
function misfits(type: protobuf.Type, value: unknown, path: string): string[] {
  switch (type.fullName) {
    case '.google.protobuf.Duration':
      return typeof value === 'string' && DURATION.test(value) ? [] : [`${path}: ${JSON.stringify(value)} is not a Duration ("1s")`];
    case '.google.protobuf.Struct':
    case '.google.protobuf.Value':
      return [];
    case '.google.protobuf.Any': {
      const v = value as Record<string, unknown>;
      const url = v['@type'];
      if (typeof url !== 'string') return [`${path}: an Any without "@type"`];
      const inner = protos.typeOf(url);
      if (!inner) return [`${path}: "@type" ${url} names no Envoy message`];
      const { '@type': _, ...rest } = v;
      return misfits(inner, rest, `${path}<${inner.name}>`);
    }
  }
  if (type.fullName.startsWith('.google.protobuf.') && type.fullName.endsWith('Value')) return []; // wrappers: a bare scalar
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${path}: expected a ${type.name} object`];
  const out: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    const field = type.fields[key] ?? Object.values(type.fields).find((f) => f.options?.json_name === key);
    if (!field) {
      out.push(`${path}.${key}: ${type.name} has no such field`);
      continue;
    }
    field.resolve();
    const items = field.repeated ? (Array.isArray(v) ? v : [Symbol('not a list')]) : [v];
    if (field.map) {
      for (const [k, mv] of Object.entries(v as object)) out.push(...fieldMisfits(field, mv, `${path}.${key}[${k}]`));
      continue;
    }
    items.forEach((item, n) => out.push(...fieldMisfits(field, item, field.repeated ? `${path}.${key}[${n}]` : `${path}.${key}`)));
  }
  return out;
}

function fieldMisfits(field: protobuf.Field, value: unknown, path: string): string[] {
  if (typeof value === 'symbol') return [`${path}: expected a list`];
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return misfits(resolved, value, path);
  if (resolved instanceof protobuf.Enum) {
    return typeof value === 'string' && value in resolved.values ? [] : [`${path}: ${JSON.stringify(value)} is not a ${resolved.name}`];
  }
  return [];
}

/** The static clusters' names, and every cluster an xDS source sends to. */
function clusterRefs(doc: Record<string, unknown>): { readonly defined: Set<string>; readonly used: string[] } {
  const statics = (doc.static_resources as { clusters?: { name: string }[] } | undefined)?.clusters ?? [];
  const used: string[] = [];
  JSON.stringify(doc, (key, v: unknown) => {
    if (key === 'envoy_grpc') used.push((v as { cluster_name: string }).cluster_name);
    return v;
  });
  return { defined: new Set(statics.map((c) => c.name)), used };
}

describe('the Envoy bootstraps in the README', () => {
  const bootstraps = readmeBootstraps();
  const bootstrap = protos.typeOf('type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap') as protobuf.Type;

  it('shows one for ADS and one for the per-type services', () => {
    const dyn = bootstraps.map((b) => b.doc.dynamic_resources as Record<string, unknown>);
    expect(dyn.some((d) => d.ads_config !== undefined)).toBe(true);
    expect(dyn.some((d) => d.ads_config === undefined)).toBe(true);
  });

  it.each(bootstraps.map((b) => [b.line, b.doc] as const))('README.md:%i fits Envoy’s Bootstrap proto', (_line, doc) => {
    expect(misfits(bootstrap, doc, 'bootstrap')).toEqual([]);
  });

  it.each(bootstraps.map((b) => [b.line, b.doc] as const))('README.md:%i names its xDS cluster and its ADS use consistently', (_line, doc) => {
    const { defined, used } = clusterRefs(doc);
    expect(used.length).toBeGreaterThan(0);
    for (const name of used) expect(defined, `cluster ${name}`).toContain(name);
    const dyn = doc.dynamic_resources as Record<string, { ads?: unknown } | undefined>;
    const viaAds = ['cds_config', 'lds_config'].filter((k) => dyn[k]?.ads !== undefined);
    // Envoy refuses `ads: {}` config sources without ads_config, and ADS without them would sit idle.
    expect(viaAds.length === 0 ? 'no ads' : 'ads', JSON.stringify(dyn)).toBe(dyn.ads_config === undefined ? 'no ads' : 'ads');
  });

  it('catches what Envoy would reject (the check itself)', () => {
    const bad = { node: { id: 'x', cluster_nme: 'y' }, static_resources: { clusters: [{ name: 'c', type: 'STATICK', connect_timeout: 1 }] } };
    expect(misfits(bootstrap, bad, 'bootstrap')).toEqual([
      'bootstrap.node.cluster_nme: Node has no such field',
      'bootstrap.static_resources.clusters[0].type: "STATICK" is not a DiscoveryType',
      'bootstrap.static_resources.clusters[0].connect_timeout: 1 is not a Duration ("1s")',
    ]);
  });
});
