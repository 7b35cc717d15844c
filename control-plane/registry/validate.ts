// Validates the Kubernetes objects and Skein policies of a registry file, collecting every problem with its document, line and field path.
import { isIP, isIPv4, isIPv6 } from 'node:net';
import type { Kind } from './objects.ts';
import type { PolicyKind } from './registry.ts';
import { POLICY_API_VERSION, SERVICE_NAME_LABEL } from './registry.ts';
import { checkAuthorizationPolicy, checkPeerAuthentication } from './validate-policy.ts';
import { unknownFields } from './unknown-fields.ts';

type Obj = Record<string, unknown>;

export interface ValidatedObject {
  readonly kind: Kind | PolicyKind;
  /** The JSON value of the document (namespace defaulted), ready for normalize(). */
  readonly raw: Obj;
}

export interface ValidationResult {
  readonly objects: ValidatedObject[];
  readonly problems: string[];
}

/** A valid object of one document, with what the cross-document duplicate check needs to word its message. */
export interface CheckedObject extends ValidatedObject, Identified {
  /** Paths of fields Kubernetes does not know: logged, not refused (kubectl warns of them too). */
  readonly unknownFields?: readonly string[];
}

/** Where a document sits in the file: its 0-based index and its first line (1-based). */
export interface DocumentPosition {
  readonly index: number;
  readonly line: number;
}

/** One document's outcome: its valid objects in order, and its problems (already carrying file, index and line). */
export interface DocumentCheck {
  readonly objects: CheckedObject[];
  readonly problems: string[];
}

const KINDS: Record<string, { apiVersion: string; kind: Kind | PolicyKind }> = {
  Service: { apiVersion: 'v1', kind: 'Service' },
  EndpointSlice: { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' },
  Pod: { apiVersion: 'v1', kind: 'Pod' },
  PeerAuthentication: { apiVersion: POLICY_API_VERSION, kind: 'PeerAuthentication' },
  AuthorizationPolicy: { apiVersion: POLICY_API_VERSION, kind: 'AuthorizationPolicy' },
};
const PROTOCOLS = new Set(['TCP', 'UDP', 'SCTP']);
const SERVICE_TYPES = new Set(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']);
const ADDRESS_TYPES = new Set(['IPv4', 'IPv6', 'FQDN']);
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A DNS-1123 label (namespace names): at most 63 characters, no dots. */
const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A DNS-1035 label (Service names): a DNS-1123 label that starts with a letter. */
const DNS_1035_LABEL = /^(?=.{1,63}$)[a-z]([-a-z0-9]*[a-z0-9])?$/;
const INBOUND_PORT_ANNOTATION = 'skein.dev/inbound-port';

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPort = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;
const show = (v: unknown): string => (v === undefined ? 'missing' : JSON.stringify(v));

/** `<file>: document <n> (<label>, line <l>)`: how every problem names its place. */
export function whereText(file: string, pos: DocumentPosition, label?: string): string {
  return `${file}: document ${pos.index + 1} (${label ? `${label}, ` : ''}line ${pos.line})`;
}

/** A document as parsed: its value, or the YAML syntax error that stopped its parse (1-based line in the file). */
export type DocumentInput = { readonly value: unknown } | { readonly syntax: { readonly reason: string; readonly line: number; readonly column: number } };

/** What the cross-document check needs of an object. */
export interface Identified {
  readonly id: string;
  readonly label: string;
  readonly prefix: string;
}

/**
 * Joins per-document outcomes in file order, adding the one check that spans documents: an object defined twice.
 * Each document's own problems come first, then its duplicates.
 */
export function joinDocuments<T extends Identified>(
  file: string,
  docs: Iterable<{ readonly pos: DocumentPosition; readonly objects: readonly T[]; readonly problems: readonly string[] }>,
): { objects: T[]; problems: string[] } {
  const objects: T[] = [];
  const problems: string[] = [];
  const seen = new Map<string, DocumentPosition>();
  for (const { pos, objects: found, problems: own } of docs) {
    problems.push(...own);
    for (const o of found) {
      const first = seen.get(o.id);
      if (first) {
        const firstWhere = whereText(file, first).replace(`${file}: `, '');
        problems.push(`${whereText(file, pos, o.label)}: ${o.prefix}metadata.name: duplicate ${o.id} (first defined in ${firstWhere})`);
        continue;
      }
      seen.set(o.id, pos);
      objects.push(o);
    }
  }
  return { objects, problems };
}

/** Validates one parsed document; its outcome depends on nothing but the document and its position. */
export function checkDocument(file: string, doc: DocumentInput, pos: DocumentPosition): DocumentCheck {
  const objects: CheckedObject[] = [];
  const problems: string[] = [];
  const where = (label?: string): string => whereText(file, pos, label);
  if ('syntax' in doc) {
    const { reason, line, column } = doc.syntax;
    problems.push(`${where()}: YAML syntax: ${reason} (line ${line}, column ${column})`);
    return { objects, problems };
  }
  const value = doc.value;
  if (value === null || value === undefined) return { objects, problems }; // an empty document (e.g. a trailing `---`)
  if (!isObj(value)) {
    problems.push(`${where()}: expected a Kubernetes object (a mapping), got ${Array.isArray(value) ? 'a list' : show(value)}`);
    return { objects, problems };
  }
  const items = value.kind === 'List' && value.apiVersion === 'v1' ? value.items : undefined;
  if (value.kind === 'List') {
    if (!Array.isArray(items)) {
      problems.push(`${where('List')}: items: expected a list of objects, got ${show(value.items)}`);
      return { objects, problems };
    }
    items.forEach((item, j) => check(item, `items[${j}].`));
  } else {
    check(value, '');
  }
  return { objects, problems };

  function check(value: unknown, prefix: string): void {
    const errors: string[] = [];
    const err = (path: string, msg: string): void => void errors.push(`${prefix}${path}: ${msg}`);
    if (!isObj(value)) {
      problems.push(`${where()}: ${prefix || '(document)'}: expected a Kubernetes object (a mapping), got ${show(value)}`);
      return;
    }
    const meta = isObj(value.metadata) ? value.metadata : undefined;
    const ns = typeof meta?.namespace === 'string' && meta.namespace ? meta.namespace : 'default';
    const name = typeof meta?.name === 'string' ? meta.name : '';
    const label = typeof value.kind === 'string' ? `${value.kind}${name ? ` ${ns}/${name}` : ''}` : undefined;
    if (typeof value.apiVersion !== 'string' || !value.apiVersion) err('apiVersion', `required, got ${show(value.apiVersion)}`);
    if (typeof value.kind !== 'string' || !value.kind) err('kind', `required, got ${show(value.kind)}`);
    if (!meta) err('metadata', `required (a mapping with name), got ${show(value.metadata)}`);
    else {
      if (!name) err('metadata.name', `required, got ${show(meta.name)}`);
      // As the API server checks them: a Service's name is a DNS-1035 label and a namespace a DNS-1123 label (no
      // dots), else `a.b` in `c` and `a` in `b.c` would both be a.b.c.svc.cluster.local and share one cluster.
      else if (value.kind === 'Service' && !DNS_1035_LABEL.test(name))
        err('metadata.name', `${show(name)} is not a valid Service name (at most 63 lowercase letters, digits and '-', starting with a letter; no dots)`);
      else if (!DNS_NAME.test(name)) err('metadata.name', `${show(name)} is not a valid Kubernetes name (lowercase DNS name)`);
      if (meta.namespace !== undefined && (typeof meta.namespace !== 'string' || !DNS_LABEL.test(meta.namespace)))
        err('metadata.namespace', `${show(meta.namespace)} is not a valid namespace name (at most 63 lowercase letters, digits and '-'; no dots)`);
      checkStringMap(meta.labels, 'metadata.labels', err);
      checkStringMap(meta.annotations, 'metadata.annotations', err);
      const tooLarge = annotationSizeProblem(meta.annotations);
      if (tooLarge) err('metadata.annotations', tooLarge);
    }
    const known = typeof value.kind === 'string' ? KINDS[value.kind] : undefined;
    if (typeof value.kind === 'string' && value.kind && !known) {
      err('kind', `unknown kind ${show(value.kind)}; a registry file holds v1 Service, discovery.k8s.io/v1 EndpointSlice, v1 Pod, ${POLICY_API_VERSION} PeerAuthentication, ${POLICY_API_VERSION} AuthorizationPolicy or a v1 List of them`);
    } else if (known && value.apiVersion !== known.apiVersion && typeof value.apiVersion === 'string') {
      err('apiVersion', `${show(value.apiVersion)} is not supported for ${known.kind}; use ${show(known.apiVersion)}`);
    }
    if (known?.kind === 'Service') checkService(value, err);
    if (known?.kind === 'EndpointSlice') checkSlice(value, err);
    if (known?.kind === 'Pod') checkPod(value, err);
    if (known?.kind === 'PeerAuthentication') checkPeerAuthentication(value, err);
    if (known?.kind === 'AuthorizationPolicy') checkAuthorizationPolicy(value, err);
    for (const e of errors) problems.push(`${where(label)}: ${e}`);
    if (errors.length === 0 && known && name) {
      const id = `${known.kind} ${ns}/${name}`;
      const unknown = unknownFields(known.kind, value).map((f) => `${prefix}${f}`);
      objects.push({ kind: known.kind, raw: { ...value, metadata: { ...meta, namespace: ns } }, id, label: label ?? id, prefix, ...(unknown.length ? { unknownFields: unknown } : {}) });
    }
  }
}

type Err = (path: string, msg: string) => void;

/** Kubernetes' limit on an object's annotations, keys and values together (apimachinery TotalAnnotationSizeLimitB). */
export const TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * 1024;

/** What is wrong when an object's annotations exceed Kubernetes' total size limit (UTF-8 bytes of keys and values). */
export function annotationSizeProblem(annotations: unknown): string | undefined {
  if (!isObj(annotations)) return undefined;
  let total = 0;
  for (const [k, v] of Object.entries(annotations)) {
    total += Buffer.byteLength(k, 'utf8') + (typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : 0);
  }
  if (total <= TOTAL_ANNOTATION_SIZE_LIMIT_B) return undefined;
  return `too long: the annotations total ${total} bytes (keys and values), over Kubernetes' limit of ${TOTAL_ANNOTATION_SIZE_LIMIT_B} (256 KiB)`;
}

function checkStringMap(v: unknown, path: string, err: Err): void {
  if (v === undefined || v === null) return;
  if (!isObj(v)) return err(path, `expected a mapping of strings, got ${show(v)}`);
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') err(`${path}.${k}`, `expected a string (quote numbers and booleans), got ${show(val)}`);
  }
}

function checkProtocol(v: unknown, path: string, err: Err): void {
  if (v !== undefined && !PROTOCOLS.has(v as string)) err(path, `${show(v)} is not a protocol (TCP, UDP or SCTP)`);
}

function checkService(svc: Obj, err: Err): void {
  const spec = svc.spec;
  if (spec === undefined) return err('spec', 'required (a mapping with ports, selector, type…)');
  if (!isObj(spec)) return err('spec', `expected a mapping, got ${show(spec)}`);
  const type = spec.type ?? 'ClusterIP';
  if (!SERVICE_TYPES.has(type as string)) err('spec.type', `${show(type)} is not a Service type (${[...SERVICE_TYPES].join(', ')})`);
  // A trailing dot (a fully qualified name) is trimmed by the API server before it checks, and by the translation.
  if (type === 'ExternalName' && (typeof spec.externalName !== 'string' || !DNS_NAME.test(spec.externalName.toLowerCase().replace(/\.$/, ''))))
    err('spec.externalName', `an ExternalName Service needs a DNS name, got ${show(spec.externalName)}`);
  const ip = spec.clusterIP;
  if (ip !== undefined && ip !== 'None' && ip !== '' && (typeof ip !== 'string' || !isIP(ip)))
    err('spec.clusterIP', `${show(ip)} is not an IP address or "None"`);
  checkStringMap(spec.selector, 'spec.selector', err);
  if (spec.ports === undefined) return;
  const ports: unknown = spec.ports;
  if (!Array.isArray(ports)) return err('spec.ports', `expected a list, got ${show(ports)}`);
  const names = new Set<string>();
  const numbers = new Set<string>();
  ports.forEach((p: unknown, i) => {
    const path = `spec.ports[${i}]`;
    if (!isObj(p)) return err(path, `expected a mapping, got ${show(p)}`);
    if (!isPort(p.port)) err(`${path}.port`, `${show(p.port)} is not a port number (1-65535)`);
    checkProtocol(p.protocol, `${path}.protocol`, err);
    // The API server refuses a port number twice for one protocol: the two would share one cluster.
    const number = `${String(p.port)}/${typeof p.protocol === 'string' ? p.protocol : 'TCP'}`;
    if (isPort(p.port) && numbers.has(number)) err(`${path}.port`, `duplicate port ${number}: each port and protocol may appear once`);
    numbers.add(number);
    const tp = p.targetPort;
    if (tp !== undefined && !isPort(tp) && !(typeof tp === 'string' && /^[a-z0-9-]{1,15}$/.test(tp) && /[a-z]/.test(tp)))
      err(`${path}.targetPort`, `${show(tp)} is neither a port number (1-65535) nor a port name`);
    if (p.name !== undefined && typeof p.name !== 'string') err(`${path}.name`, `expected a string, got ${show(p.name)}`);
    if (ports.length > 1 && !p.name) err(`${path}.name`, 'required when a Service has more than one port');
    if (typeof p.name === 'string' && p.name) {
      if (names.has(p.name)) err(`${path}.name`, `duplicate port name ${show(p.name)}`);
      names.add(p.name);
    }
    if (p.appProtocol !== undefined && typeof p.appProtocol !== 'string')
      err(`${path}.appProtocol`, `expected a string, got ${show(p.appProtocol)}`);
  });
}

function checkSlice(slice: Obj, err: Err): void {
  const labels = isObj(slice.metadata) && isObj(slice.metadata.labels) ? slice.metadata.labels : {};
  // Kubernetes allows a slice without the label: it belongs to no Service, and is kept but serves nothing.
  const owner = labels[SERVICE_NAME_LABEL];
  if (owner !== undefined && (typeof owner !== 'string' || !DNS_1035_LABEL.test(owner)))
    err(`metadata.labels["${SERVICE_NAME_LABEL}"]`, `${show(owner)} is not a Service name`);
  const type = slice.addressType;
  if (!ADDRESS_TYPES.has(type as string)) err('addressType', `${show(type)} is not an address type (IPv4, IPv6 or FQDN)`);
  const valid = type === 'IPv4' ? isIPv4 : type === 'IPv6' ? isIPv6 : (a: string) => DNS_NAME.test(a);
  const what = type === 'FQDN' ? 'a DNS name (addressType FQDN)' : `an IP address (addressType ${String(type)})`;
  if (slice.endpoints !== undefined && slice.endpoints !== null && !Array.isArray(slice.endpoints))
    err('endpoints', `expected a list, got ${show(slice.endpoints)}`);
  (Array.isArray(slice.endpoints) ? slice.endpoints : []).forEach((e: unknown, i) => {
    const path = `endpoints[${i}]`;
    if (!isObj(e)) return err(path, `expected a mapping, got ${show(e)}`);
    if (!Array.isArray(e.addresses) || e.addresses.length === 0)
      err(`${path}.addresses`, `required: a non-empty list of addresses, got ${show(e.addresses)}`);
    else
      e.addresses.forEach((a: unknown, j) => {
        if (typeof a !== 'string' || !ADDRESS_TYPES.has(type as string)) {
          if (typeof a !== 'string') err(`${path}.addresses[${j}]`, `${show(a)} is not an address`);
        } else if (!valid(a)) err(`${path}.addresses[${j}]`, `${show(a)} is not ${what}`);
      });
    if (e.conditions !== undefined && e.conditions !== null) { // null: no conditions, as the API server reads it
      if (!isObj(e.conditions)) err(`${path}.conditions`, `expected a mapping, got ${show(e.conditions)}`);
      else
        for (const c of ['ready', 'serving', 'terminating'])
          if (e.conditions[c] !== undefined && e.conditions[c] !== null && typeof e.conditions[c] !== 'boolean')
            err(`${path}.conditions.${c}`, `expected true or false, got ${show(e.conditions[c])}`);
    }
    if (e.targetRef !== undefined) {
      if (!isObj(e.targetRef)) err(`${path}.targetRef`, `expected a mapping, got ${show(e.targetRef)}`);
      else if (typeof e.targetRef.name !== 'string' || !e.targetRef.name)
        err(`${path}.targetRef.name`, `required, got ${show(e.targetRef.name)}`);
    }
  });
  if (slice.ports === undefined || slice.ports === null) return;
  if (!Array.isArray(slice.ports)) return err('ports', `expected a list, got ${show(slice.ports)}`);
  slice.ports.forEach((p: unknown, i) => {
    if (!isObj(p)) return err(`ports[${i}]`, `expected a mapping, got ${show(p)}`);
    if (p.port !== undefined && p.port !== null && !isPort(p.port)) err(`ports[${i}].port`, `${show(p.port)} is not a port number (1-65535)`);
    checkProtocol(p.protocol, `ports[${i}].protocol`, err);
    if (p.name !== undefined && typeof p.name !== 'string') err(`ports[${i}].name`, `expected a string, got ${show(p.name)}`);
  });
}

/** A Pod's fields the mesh reads (its inbound-port annotation above all): the file's and the Kubernetes source's check. */
export function checkPod(pod: Obj, err: Err): void {
  const annotations = isObj(pod.metadata) && isObj(pod.metadata.annotations) ? pod.metadata.annotations : {};
  const inbound = annotations[INBOUND_PORT_ANNOTATION];
  if (inbound !== undefined && !(typeof inbound === 'string' && /^\d+$/.test(inbound) && isPort(Number(inbound))))
    err(`metadata.annotations["${INBOUND_PORT_ANNOTATION}"]`, `${show(inbound)} is not a port number (1-65535) in quotes`);
  if (pod.spec !== undefined) {
    if (!isObj(pod.spec)) err('spec', `expected a mapping, got ${show(pod.spec)}`);
    else if (pod.spec.serviceAccountName !== undefined && (typeof pod.spec.serviceAccountName !== 'string' || !DNS_NAME.test(pod.spec.serviceAccountName)))
      err('spec.serviceAccountName', `${show(pod.spec.serviceAccountName)} is not a valid service account name`);
  }
  if (pod.status !== undefined && isObj(pod.status)) {
    const ip = pod.status.podIP;
    if (ip !== undefined && (typeof ip !== 'string' || !isIP(ip))) err('status.podIP', `${show(ip)} is not an IP address`);
  }
}
