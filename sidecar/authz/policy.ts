// Evaluates a Service's authorization policy (Istio semantics: deny rules first, then allow) for one caller and request.
import type { AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource } from '../xds/model.ts';

/** Who is calling: the verified SPIFFE ID and its namespace; both undefined for plaintext (no identity). */
export interface Caller {
  readonly principal: string | undefined;
  readonly namespace: string | undefined;
}

/** What is called; undefined when deciding at L4 (a TCP connection without HTTP). */
export interface Operation {
  readonly method: string;
  /** The request path; the query string is ignored. */
  readonly path: string;
}

export interface Decision {
  readonly allowed: boolean;
  /** What decided, for logs and the 403 body: `denied by deny rule 0`, `no allow rule matched`, ... */
  readonly reason: string;
}

/** `*` matches any value; `x*` a prefix; `*x` a suffix; anything else exactly (Istio's string match). */
function matchValue(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

function sourceMatches(s: AuthzSource, caller: Caller): boolean {
  if (s.principals !== undefined) {
    const p = caller.principal;
    if (p === undefined || !s.principals.some((x) => matchValue(x, p))) return false;
  }
  if (s.namespaces !== undefined) {
    const n = caller.namespace;
    if (n === undefined || !s.namespaces.some((x) => matchValue(x, n))) return false;
  }
  return true;
}

function pathOf(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

/**
 * A path entry matches that path and everything below it, by whole segments (`/api` matches `/api` and `/api/v1`, not
 * `/apiary`); one ending in `/` or `*` is a plain prefix. The path is normalised first (see path.ts).
 */
function pathMatches(pattern: string, path: string): boolean {
  if (pattern.endsWith('*')) return path.startsWith(pattern.slice(0, -1));
  if (pattern.endsWith('/')) return path.startsWith(pattern);
  return path.startsWith(pattern) && (path.length === pattern.length || path.charCodeAt(pattern.length) === 0x2f);
}

function operationMatches(o: AuthzOperation, op: Operation): boolean {
  if (o.methods !== undefined && !o.methods.includes(op.method.toUpperCase())) return false;
  if (o.paths !== undefined) {
    const path = pathOf(op.path);
    if (!o.paths.some((p) => pathMatches(p, path))) return false;
  }
  return true;
}

/**
 * Whether `rule` matches. At L4 (`op` undefined) the operation fields cannot be checked: like Istio for TCP, a deny
 * rule with operations counts as matching (fail closed) and an allow rule with operations never matches.
 */
function ruleMatches(rule: AuthzRule, caller: Caller, op: Operation | undefined, deny: boolean): boolean {
  if (rule.from.length > 0 && !rule.from.some((s) => sourceMatches(s, caller))) return false;
  if (rule.to.length === 0) return true;
  if (op === undefined) return deny || rule.to.some((o) => o.methods === undefined && o.paths === undefined);
  return rule.to.some((o) => operationMatches(o, op));
}

export function evaluate(policy: AuthzPolicy, caller: Caller, op: Operation | undefined): Decision {
  for (let i = 0; i < policy.deny.length; i++) {
    if (ruleMatches(policy.deny[i] as AuthzRule, caller, op, true)) return { allowed: false, reason: `denied by deny rule ${i}` };
  }
  if (policy.allow === undefined) return { allowed: true, reason: 'no deny rule matched and no allow rules apply' };
  for (let i = 0; i < policy.allow.length; i++) {
    if (ruleMatches(policy.allow[i] as AuthzRule, caller, op, false)) return { allowed: true, reason: `allowed by allow rule ${i}` };
  }
  return { allowed: false, reason: 'no allow rule matched' };
}
