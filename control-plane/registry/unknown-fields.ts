// Finds fields Kubernetes does not know in a Service, EndpointSlice or Pod (kubectl warns of them), by client-node's models.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface Attribute {
  readonly baseName: string;
  readonly type: string;
}

/** A model's fields by their YAML name, with their type; undefined for a type that is not a model (string, Date…). */
const models = new Map<string, ReadonlyMap<string, string> | undefined>();

function model(type: string): ReadonlyMap<string, string> | undefined {
  if (models.has(type)) return models.get(type);
  let fields: Map<string, string> | undefined;
  if (/^[A-Z][A-Za-z0-9]*$/.test(type) && type !== 'Date' && type !== 'IntOrString') {
    try {
      // One small generated file per model (no index import: the API clients stay unloaded).
      const mod = require(`@kubernetes/client-node/dist/gen/models/${type}.js`) as Record<string, { attributeTypeMap?: readonly Attribute[] }>;
      const map = mod[type]?.attributeTypeMap;
      if (map !== undefined) fields = new Map(map.map((a) => [a.baseName, a.type]));
    } catch {
      fields = undefined; // not a generated model: treated as a leaf
    }
  }
  models.set(type, fields);
  return fields;
}

const ROOTS: Readonly<Record<string, string>> = { Service: 'V1Service', EndpointSlice: 'V1EndpointSlice', Pod: 'V1Pod' };

/** Most reported per object: a pasted object from another API could otherwise fill the log. */
const MAX_REPORTED = 10;

/** A type string of client-node's models, parsed once: a list of, a map of, a model, or a leaf (string, Date…). */
type Shape =
  | { readonly of: 'list'; readonly item: Shape }
  | { readonly of: 'map'; readonly value: Shape }
  | { readonly of: 'model'; readonly fields: ReadonlyMap<string, Shape | string> }
  | { readonly of: 'leaf' };

const LEAF: Shape = { of: 'leaf' };
const shapes = new Map<string, Shape>();

function shape(type: string): Shape {
  let s = shapes.get(type);
  if (s !== undefined) return s;
  const list = /^Array<(.+)>$/.exec(type);
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  const fields = list || map ? undefined : model(type);
  if (list) s = { of: 'list', item: shape(list[1] as string) };
  else if (map) s = { of: 'map', value: shape(map[1] as string) };
  else if (fields !== undefined) s = { of: 'model', fields: new Map(fields) };
  else s = LEAF;
  shapes.set(type, s);
  return s;
}

/** Field paths (`spec.selectr`, `spec.ports[0].targetport`) of `value` that its kind's schema does not have. */
export function unknownFields(kind: string, value: unknown): string[] {
  const root = ROOTS[kind];
  const out: string[] = [];
  if (root !== undefined) walk(value, shape(root), [], out);
  return out;
}

/** `spec`, `ports`, 0, `name` → `spec.ports[0].name` (built only for a field that is reported). */
function pathText(at: readonly (string | number)[]): string {
  let text = '';
  for (const p of at) text += typeof p === 'number' ? `[${p}]` : text === '' || p.startsWith('[') ? p : `.${p}`;
  return text;
}

function walk(value: unknown, s: Shape, at: (string | number)[], out: string[]): void {
  if (s.of === 'leaf' || out.length >= MAX_REPORTED || value === null || typeof value !== 'object') return;
  if (s.of === 'list') {
    if (!Array.isArray(value)) return;
    for (let i = 0; i < value.length; i++) {
      at.push(i);
      walk(value[i], s.item, at, out);
      at.pop();
    }
    return;
  }
  if (Array.isArray(value)) return;
  const obj = value as Record<string, unknown>;
  if (s.of === 'map') {
    if (s.value.of === 'leaf') return;
    for (const k in obj) {
      at.push(`[${JSON.stringify(k)}]`);
      walk(obj[k], s.value, at, out);
      at.pop();
    }
    return;
  }
  for (const k in obj) {
    let field = s.fields.get(k);
    if (field === undefined) {
      if (out.length < MAX_REPORTED) out.push(pathText([...at, k]));
      continue;
    }
    if (typeof field === 'string') {
      field = shape(field);
      (s.fields as Map<string, Shape | string>).set(k, field);
    }
    if (field.of === 'leaf') continue;
    at.push(k);
    walk(obj[k], field, at, out);
    at.pop();
  }
}
