// Parses the `skein.dev/*` annotations on Services and Pods into typed settings, with errors that name the field.
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { load as parseYaml } from 'js-yaml';
import { SkeinControlPlaneError } from '../errors.ts';
import type { MtlsMode, Principal } from '../registry/registry.ts';
import { parsePrincipal } from '../registry/registry.ts';

export const ANNOTATION = {
  connectTimeout: 'skein.dev/connect-timeout',
  timeout: 'skein.dev/timeout',
  lbPolicy: 'skein.dev/lb-policy',
  hashHeader: 'skein.dev/hash-header',
  routes: 'skein.dev/routes',
  inboundPort: 'skein.dev/inbound-port',
  proxyProtocol: 'skein.dev/proxy-protocol',
  mtlsMode: 'skein.dev/mtls-mode',
  allow: 'skein.dev/allow',
} as const;

/** A `skein.dev/*` annotation the translator cannot use; the setting falls back to its default. */
export class AnnotationError extends SkeinControlPlaneError {
  readonly annotation: string;
  /** Where in the object: `Service default/web metadata.annotations["skein.dev/routes"][1].prefix`. */
  readonly where: string;
  /** Where inside the annotation's value (`[1].prefix`; empty for the whole value). */
  readonly path: string;
  /** What is wrong and what applies instead. */
  readonly problem: string;
  constructor(where: string, annotation: string, path: string, problem: string) {
    super('SKEIN_TRANSLATE_ANNOTATION', `${where} metadata.annotations["${annotation}"]${path}: ${problem}`);
    this.name = 'AnnotationError';
    this.annotation = annotation;
    this.where = where;
    this.path = path;
    this.problem = problem;
  }
}

export interface Duration {
  readonly seconds: number;
  readonly nanos: number;
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** google.protobuf.Duration's limit (10,000 years), which Envoy enforces when it loads config. */
export const MAX_DURATION_MS = 315_576_000_000_000;
/** weighted_clusters weights are shared out as percentages (see translate/route.ts), so at most 100 targets. */
export const MAX_WEIGHTED_TARGETS = 100;

/** Parses a Go-style duration ("250ms", "1.5s", "1m30s") into milliseconds; undefined if malformed or too long. */
export function parseDurationMs(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(trimmed)) return undefined;
  let total = 0;
  for (const m of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? 0);
  const ms = Math.round(total);
  return ms <= MAX_DURATION_MS ? ms : undefined;
}

export function durationOf(ms: number): Duration {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

export type LbPolicyAnnotation = 'round-robin' | 'random' | 'ring-hash' | 'least-request';
const LB_POLICIES: readonly LbPolicyAnnotation[] = ['round-robin', 'random', 'ring-hash', 'least-request'];

/** A target of a `skein.dev/routes` entry, not yet checked against the registry. */
export interface RouteTargetRef {
  readonly service: string;
  readonly namespace: string;
  readonly port: number;
  readonly weight: number;
}

export interface RouteAnnotationEntry {
  readonly prefix: string;
  readonly targets: readonly RouteTargetRef[];
}

/** A caller `skein.dev/allow` names: one identity (or `*`, any), or every service account of a namespace. */
export type AllowEntry = Principal | { readonly namespaceWide: string };

export interface ServiceSettings {
  readonly connectTimeoutMs?: number;
  readonly timeoutMs?: number;
  readonly lbPolicy?: LbPolicyAnnotation;
  /** `skein.dev/hash-header`: the request header a ring-hash balancer hashes on (lower-cased). */
  readonly hashHeader?: string;
  readonly routes?: readonly RouteAnnotationEntry[];
  /** `skein.dev/mtls-mode`: beats every PeerAuthentication. */
  readonly mtlsMode?: MtlsMode;
  /** `skein.dev/allow`: the callers of one ALLOW rule; an empty list (nothing valid) allows no caller. */
  readonly allow?: readonly AllowEntry[];
}

/**
 * Reads every Service annotation. A bad one is reported in `errors`; its setting keeps the value it had in
 * `lastGood` (the settings of the Service's last translation) when it had one, so a typo in an edit changes nothing
 * that was in force, else it is left out (the default). `skein.dev/allow` is the exception (see below).
 */
export function parseServiceAnnotations(
  meta: V1ObjectMeta | undefined,
  where: string,
  lastGood?: ServiceSettings,
): { settings: ServiceSettings; errors: AnnotationError[] } {
  const annotations = meta?.annotations ?? {};
  const namespace = meta?.namespace ?? 'default';
  const errors: AnnotationError[] = [];
  const settings: { -readonly [K in keyof ServiceSettings]: ServiceSettings[K] } = {};
  /** A bad value: the last valid setting stays (said so), else `otherwise` says what applies. */
  const refuse = <K extends keyof ServiceSettings>(field: K, annotation: string, problem: string, otherwise: string, shown?: (v: NonNullable<ServiceSettings[K]>) => string): void => {
    const kept = lastGood?.[field];
    if (kept !== undefined) settings[field] = kept;
    const effect = kept !== undefined ? `keeping its last valid value${shown ? `, ${shown(kept as NonNullable<ServiceSettings[K]>)}` : ''}` : otherwise;
    errors.push(new AnnotationError(where, annotation, '', `${problem} (${effect})`));
  };
  const ms = (v: number): string => `${v}ms`;

  const ct = annotations[ANNOTATION.connectTimeout];
  if (ct !== undefined) {
    const value = parseDurationMs(ct);
    if (value === undefined || value <= 0) refuse('connectTimeoutMs', ANNOTATION.connectTimeout, `"${ct}" is not a positive duration; use e.g. "250ms" or "2s"`, 'keeping 1s', ms);
    else settings.connectTimeoutMs = value;
  }

  const to = annotations[ANNOTATION.timeout];
  if (to !== undefined) {
    const value = parseDurationMs(to);
    if (value === undefined) refuse('timeoutMs', ANNOTATION.timeout, `"${to}" is not a duration; use e.g. "15s", or "0s" for no timeout`, 'keeping no timeout', ms);
    else settings.timeoutMs = value;
  }

  const lb = annotations[ANNOTATION.lbPolicy];
  if (lb !== undefined) {
    const value = lb.trim().toLowerCase() as LbPolicyAnnotation;
    if (!LB_POLICIES.includes(value)) refuse('lbPolicy', ANNOTATION.lbPolicy, `"${lb}" is not one of ${LB_POLICIES.join(', ')}`, 'keeping the default', String);
    else settings.lbPolicy = value;
  }

  const hashHeader = annotations[ANNOTATION.hashHeader];
  if (hashHeader !== undefined) {
    const name = hashHeader.trim().toLowerCase();
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) refuse('hashHeader', ANNOTATION.hashHeader, `"${hashHeader}" is not an HTTP header name`, 'no hashing', String);
    else settings.hashHeader = name;
  }

  const routes = annotations[ANNOTATION.routes];
  if (routes !== undefined) {
    const parsed = parseRoutes(routes, namespace, where);
    if (!(parsed instanceof AnnotationError)) settings.routes = parsed;
    else if (lastGood?.routes === undefined) errors.push(parsed);
    else {
      settings.routes = lastGood.routes;
      errors.push(new AnnotationError(where, ANNOTATION.routes, parsed.path, parsed.problem.replace(/ \(keeping the default route\)$/, ' (keeping its last valid routes)')));
    }
  }

  const mode = annotations[ANNOTATION.mtlsMode];
  if (mode !== undefined) {
    const value = mode.trim().toUpperCase();
    if (value === 'STRICT' || value === 'PERMISSIVE') settings.mtlsMode = value;
    else refuse('mtlsMode', ANNOTATION.mtlsMode, `"${mode}" is not STRICT or PERMISSIVE`, 'using the PeerAuthentication policies, else STRICT', String);
  }

  // `skein.dev/allow` fails closed instead: a broken list allows only its valid entries (none: no caller), never the
  // callers of a former list, so an edit that takes a caller out cannot leave it in through a typo elsewhere.
  const allow = annotations[ANNOTATION.allow];
  if (allow !== undefined) {
    const parsed = parseAllow(allow, where);
    settings.allow = parsed.entries;
    if (parsed.error) errors.push(parsed.error);
  }
  return { settings, errors };
}

/**
 * `skein.dev/allow: "<ns>/<sa>, <ns>/*, ..."` (also the Istio and SPIFFE principal forms, and `*` for any identity).
 * Bad entries are reported and left out; the rest still apply, so a typo never opens the Service to everyone.
 */
function parseAllow(text: string, where: string): { entries: AllowEntry[]; error?: AnnotationError } {
  const entries: AllowEntry[] = [];
  const bad: string[] = [];
  const items = text.split(/[,\s]+/).filter(Boolean);
  for (const item of items) {
    const wide = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/\*$/.exec(item);
    const principal = wide ? undefined : parsePrincipal(item);
    if (wide?.[1]) entries.push({ namespaceWide: wide[1] });
    else if (principal) entries.push(principal);
    else bad.push(`"${item}"`);
  }
  const forms = 'list callers as "<namespace>/<service-account>" or "<namespace>/*", comma-separated';
  if (items.length === 0) return { entries, error: new AnnotationError(where, ANNOTATION.allow, '', `is empty; ${forms} (allowing no caller until fixed)`) };
  if (bad.length === 0) return { entries };
  const effect = entries.length > 0 ? 'allowing only the valid entries' : 'allowing no caller until fixed';
  const what = bad.length === 1 ? `${bad[0]} is not a caller` : `${bad.join(', ')} are not callers`;
  return { entries, error: new AnnotationError(where, ANNOTATION.allow, '', `${what}; ${forms} (${effect})`) };
}

function parseRoutes(text: string, namespace: string, where: string): RouteAnnotationEntry[] | AnnotationError {
  const fail = (path: string, problem: string) =>
    new AnnotationError(where, ANNOTATION.routes, path, `${problem} (keeping the default route)`);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    return fail('', `not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!Array.isArray(doc)) return fail('', 'must be a list of {prefix, cluster} or {prefix, weighted: [...]}');
  const entries: RouteAnnotationEntry[] = [];
  for (const [i, raw] of doc.entries()) {
    const at = `[${i}]`;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return fail(at, 'must be a mapping with prefix and cluster or weighted');
    const entry = raw as Record<string, unknown>;
    const prefix = entry.prefix ?? '/';
    if (typeof prefix !== 'string' || !prefix.startsWith('/')) return fail(`${at}.prefix`, `${JSON.stringify(prefix)} must be a path starting with "/"`);
    const hasCluster = entry.cluster !== undefined;
    const hasWeighted = entry.weighted !== undefined;
    if (hasCluster === hasWeighted) return fail(at, 'needs exactly one of cluster ("<svc>[.<ns>]:<port>") or weighted ([{service, port, weight}])');
    if (hasCluster) {
      const m = typeof entry.cluster === 'string' ? /^([^:]+):(\d+)$/.exec(entry.cluster) : null;
      const ref = m?.[1] ? splitRef(m[1], namespace) : undefined;
      const port = Number(m?.[2]);
      if (!ref || !validPort(port)) return fail(`${at}.cluster`, `${JSON.stringify(entry.cluster)} must look like "<svc>[.<ns>]:<port>"`);
      entries.push({ prefix, targets: [{ ...ref, port, weight: 1 }] });
      continue;
    }
    if (!Array.isArray(entry.weighted) || entry.weighted.length === 0) return fail(`${at}.weighted`, 'must be a non-empty list of {service, port, weight}');
    if (entry.weighted.length > MAX_WEIGHTED_TARGETS) return fail(`${at}.weighted`, `has ${entry.weighted.length} targets; at most ${MAX_WEIGHTED_TARGETS} (weights are shared out as percentages)`);
    const targets: RouteTargetRef[] = [];
    for (const [j, w] of (entry.weighted as unknown[]).entries()) {
      const wat = `${at}.weighted[${j}]`;
      const t = (w ?? {}) as Record<string, unknown>;
      const ref = typeof t.service === 'string' ? splitRef(t.service, namespace) : undefined;
      if (!ref) return fail(`${wat}.service`, `${JSON.stringify(t.service)} must be "<svc>[.<ns>]"`);
      const port = Number(t.port);
      if (!validPort(port)) return fail(`${wat}.port`, t.port === undefined ? 'is missing: the target Service\'s port, 1-65535' : `${JSON.stringify(t.port)} must be a port number 1-65535`);
      const weight = t.weight === undefined ? 1 : Number(t.weight);
      if (!Number.isInteger(weight) || weight < 1) return fail(`${wat}.weight`, `${JSON.stringify(t.weight)} must be a whole number >= 1`);
      targets.push({ ...ref, port, weight });
    }
    entries.push({ prefix, targets });
  }
  return entries;
}

function splitRef(ref: string, namespace: string): { service: string; namespace: string } | undefined {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.([a-z0-9]([-a-z0-9]*[a-z0-9])?))?$/.exec(ref.trim());
  if (!m?.[1]) return undefined;
  return { service: m[1], namespace: m[4] ?? namespace };
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

/** The port a Pod's Skein sidecar accepts mesh traffic on, from `skein.dev/inbound-port`. */
export function parseInboundPort(meta: V1ObjectMeta | undefined, where: string): number | AnnotationError | undefined {
  const raw = meta?.annotations?.[ANNOTATION.inboundPort];
  if (raw === undefined) return undefined;
  const port = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !validPort(port)) {
    return new AnnotationError(where, ANNOTATION.inboundPort, '', `"${raw}" must be a port number 1-65535 (sending plain traffic to the pod)`);
  }
  return port;
}

/**
 * Where a caller's sidecar puts the PROXY v2 header that names the app port, from `skein.dev/proxy-protocol` on the
 * Pod: `inside-tls` (the default, tamper-proof), `outside-tls` (before the handshake, where a native proxy receiving
 * with haproxy's `accept-proxy` or Envoy's proxy_protocol listener filter reads it), or `none` (a peer with one app
 * port). Returns undefined for the default.
 */
export function parseProxyProtocol(meta: V1ObjectMeta | undefined, where: string): ProxyProtocol | AnnotationError | undefined {
  const raw = meta?.annotations?.[ANNOTATION.proxyProtocol];
  if (raw === undefined) return undefined;
  const v = raw.trim();
  if (v === 'inside-tls') return undefined;
  if (v === 'outside-tls' || v === 'none') return v;
  return new AnnotationError(where, ANNOTATION.proxyProtocol, '', `"${raw}" must be one of inside-tls, outside-tls, none (using inside-tls)`);
}

export type ProxyProtocol = 'outside-tls' | 'none';
