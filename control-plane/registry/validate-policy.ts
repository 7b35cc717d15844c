// Validates PeerAuthentication and AuthorizationPolicy specs (Istio's shapes, the subset Skein enforces) with field paths.
import { parsePrincipal, PRINCIPAL_FORMS } from './principal.ts';

type Obj = Record<string, unknown>;
/** Reports one problem at a field path (relative to the object). */
export type Err = (path: string, msg: string) => void;

export const HTTP_METHODS: readonly string[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const METHODS = new Set(HTTP_METHODS);
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => (v === undefined ? 'missing' : JSON.stringify(v));

/** Istio fields Skein does not enforce, with what to do instead; anything else unknown is reported as a typo. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  selector: 'workload selectors are not supported; target Services with spec.targetRefs',
  targetRef: 'use spec.targetRefs (a list)',
  portLevelMtls: 'per-port modes are not supported; annotate the Service with skein.dev/mtls-mode or target it',
  provider: 'CUSTOM providers are not supported',
  when: 'conditions (when) are not supported; express the rule with from and to',
  notPrincipals: 'negative matches are not supported; use a DENY policy',
  notNamespaces: 'negative matches are not supported; use a DENY policy',
  notMethods: 'negative matches are not supported; use a DENY policy',
  notPaths: 'negative matches are not supported; use a DENY policy',
  notHosts: 'host matches are not supported',
  notPorts: 'port matches are not supported',
  hosts: 'host matches are not supported (a policy applies to the Services it targets)',
  ports: 'port matches are not supported',
  requestPrincipals: 'JWT request principals are not supported',
  notRequestPrincipals: 'JWT request principals are not supported',
  ipBlocks: 'IP blocks are not supported; match workload identities with principals',
  notIpBlocks: 'IP blocks are not supported',
  remoteIpBlocks: 'IP blocks are not supported',
  notRemoteIpBlocks: 'IP blocks are not supported',
};

/** Reports every key of `obj` outside `allowed`. */
function onlyKeys(obj: Obj, path: string, allowed: readonly string[], err: Err): void {
  for (const key of Object.keys(obj)) {
    if (allowed.includes(key)) continue;
    const why = UNSUPPORTED[key] ?? `unknown field; expected ${allowed.join(', ')}`;
    err(`${path}.${key}`, why);
  }
}

/** A list field: absent is fine (undefined), present must be a non-empty list. */
function nonEmptyList(v: unknown, path: string, err: Err, omitHint: string): unknown[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) {
    err(path, `expected a list, got ${show(v)}`);
    return undefined;
  }
  if (v.length === 0) {
    err(path, `must not be empty; ${omitHint}`);
    return undefined;
  }
  return v;
}

function checkTargetRefs(spec: Obj, err: Err): void {
  const refs = nonEmptyList(spec.targetRefs, 'spec.targetRefs', err, 'omit targetRefs to apply to every Service of the namespace');
  const seen = new Set<string>();
  refs?.forEach((ref, i) => {
    const path = `spec.targetRefs[${i}]`;
    if (!isObj(ref)) return err(path, `expected a mapping {kind: Service, name}, got ${show(ref)}`);
    onlyKeys(ref, path, ['kind', 'name', 'group'], err);
    if (ref.kind !== 'Service') err(`${path}.kind`, `${show(ref.kind)}: only Services can be targeted (kind: Service)`);
    if (ref.group !== undefined && ref.group !== '') err(`${path}.group`, `${show(ref.group)}: Services are in the core group (""); omit group`);
    if (typeof ref.name !== 'string' || !DNS_LABEL.test(ref.name)) err(`${path}.name`, `${show(ref.name)} is not a Service name`);
    else if (seen.has(ref.name)) err(`${path}.name`, `duplicate target ${show(ref.name)}`);
    else seen.add(ref.name);
  });
}

export function checkPeerAuthentication(obj: Obj, err: Err): void {
  const spec = obj.spec;
  if (!isObj(spec)) return err('spec', `required: a mapping with mtls.mode (STRICT or PERMISSIVE), got ${show(spec)}`);
  onlyKeys(spec, 'spec', ['mtls', 'targetRefs'], err);
  const mtls = spec.mtls;
  if (!isObj(mtls)) err('spec.mtls', `required: a mapping with mode (STRICT or PERMISSIVE), got ${show(mtls)}`);
  else {
    onlyKeys(mtls, 'spec.mtls', ['mode'], err);
    if (mtls.mode !== 'STRICT' && mtls.mode !== 'PERMISSIVE') err('spec.mtls.mode', `must be STRICT or PERMISSIVE, got ${show(mtls.mode)}`);
  }
  checkTargetRefs(spec, err);
}

export function checkAuthorizationPolicy(obj: Obj, err: Err): void {
  const spec = obj.spec;
  if (!isObj(spec)) {
    return err('spec', `required: a mapping with action and rules (\`spec: {}\` denies every request to the namespace's Services), got ${show(spec)}`);
  }
  onlyKeys(spec, 'spec', ['targetRefs', 'action', 'rules'], err);
  checkTargetRefs(spec, err);
  const action = spec.action;
  if (action !== undefined && action !== 'ALLOW' && action !== 'DENY') {
    const hint = action === 'AUDIT' || action === 'CUSTOM' ? ` (${action} is not supported)` : '';
    err('spec.action', `must be ALLOW or DENY${hint}, got ${show(action)}`);
  }
  if (spec.rules === undefined) return;
  if (!Array.isArray(spec.rules)) return err('spec.rules', `expected a list of {from, to}, got ${show(spec.rules)}`);
  spec.rules.forEach((rule: unknown, i) => checkRule(rule, `spec.rules[${i}]`, err));
}

function checkRule(rule: unknown, path: string, err: Err): void {
  if (!isObj(rule)) return err(path, `expected a mapping with from and/or to ({} matches every request), got ${show(rule)}`);
  onlyKeys(rule, path, ['from', 'to'], err);
  const from = nonEmptyList(rule.from, `${path}.from`, err, 'omit from to match every caller');
  from?.forEach((f, j) => {
    const at = `${path}.from[${j}]`;
    if (!isObj(f)) return err(at, `expected a mapping {source: {...}}, got ${show(f)}`);
    onlyKeys(f, at, ['source'], err);
    if (!isObj(f.source)) return err(`${at}.source`, `required: a mapping with principals and/or namespaces, got ${show(f.source)}`);
    checkSource(f.source, `${at}.source`, err);
  });
  const to = nonEmptyList(rule.to, `${path}.to`, err, 'omit to to match every request');
  to?.forEach((t, j) => {
    const at = `${path}.to[${j}]`;
    if (!isObj(t)) return err(at, `expected a mapping {operation: {...}}, got ${show(t)}`);
    onlyKeys(t, at, ['operation'], err);
    if (!isObj(t.operation)) return err(`${at}.operation`, `required: a mapping with methods and/or paths, got ${show(t.operation)}`);
    checkOperation(t.operation, `${at}.operation`, err);
  });
}

function checkSource(source: Obj, path: string, err: Err): void {
  onlyKeys(source, path, ['principals', 'namespaces'], err);
  if (source.principals === undefined && source.namespaces === undefined) {
    err(path, 'must set principals and/or namespaces (omit from to match every caller)');
  }
  nonEmptyList(source.principals, `${path}.principals`, err, 'omit principals to match any identity')?.forEach((p, k) => {
    const at = `${path}.principals[${k}]`;
    if (typeof p !== 'string') return err(at, `expected a string, got ${show(p)}`);
    if (parsePrincipal(p)) return;
    const wildcard = /^([a-z0-9-]+)\/\*$|^(?:spiffe:\/\/)?[^/]+\/ns\/([a-z0-9-]+)\/sa\/\*$/.exec(p.trim());
    if (wildcard) err(at, `${show(p)}: for every service account of a namespace use namespaces: ["${wildcard[1] ?? wildcard[2]}"]`);
    else err(at, `${show(p)} is not a principal; write ${PRINCIPAL_FORMS}`);
  });
  nonEmptyList(source.namespaces, `${path}.namespaces`, err, 'omit namespaces to match any namespace')?.forEach((n, k) => {
    if (typeof n !== 'string' || (n !== '*' && !DNS_LABEL.test(n))) err(`${path}.namespaces[${k}]`, `${show(n)} is not a namespace name (or "*": any namespace)`);
  });
}

function checkOperation(op: Obj, path: string, err: Err): void {
  onlyKeys(op, path, ['methods', 'paths'], err);
  if (op.methods === undefined && op.paths === undefined) err(path, 'must set methods and/or paths (omit to to match every request)');
  nonEmptyList(op.methods, `${path}.methods`, err, 'omit methods to match any method')?.forEach((m, k) => {
    const at = `${path}.methods[${k}]`;
    if (typeof m === 'string' && METHODS.has(m)) return;
    const upper = typeof m === 'string' && METHODS.has(m.toUpperCase()) ? `; write ${show(m.toUpperCase())}` : ` (${HTTP_METHODS.join(', ')})`;
    err(at, `${show(m)} is not an HTTP method${upper}`);
  });
  nonEmptyList(op.paths, `${path}.paths`, err, 'omit paths to match any path')?.forEach((p, k) => {
    const at = `${path}.paths[${k}]`;
    if (typeof p !== 'string') return err(at, `expected a string, got ${show(p)}`);
    const star = p.indexOf('*');
    if (p !== '*' && !p.startsWith('/')) err(at, `${show(p)} must start with "/" (a path matches itself and what is below it: "/api" matches "/api/v1")`);
    else if (star !== -1 && star !== p.length - 1) err(at, `${show(p)}: "*" may only end a path (a trailing "*" is a prefix; suffix matches are not supported)`);
  });
}
