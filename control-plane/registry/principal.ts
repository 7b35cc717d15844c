// Workload principals as policies write them (`<ns>/<sa>`, `<td>/ns/<ns>/sa/<sa>`, `spiffe://…`, `*`): parsing and SPIFFE IDs.

/** A parsed principal: `any` for `*`, else a service account with the trust domain if one was written. */
export type Principal =
  | { readonly any: true }
  | { readonly any?: false; readonly trustDomain?: string; readonly namespace: string; readonly serviceAccount: string };

const LABEL = '[a-z0-9](?:[-a-z0-9]*[a-z0-9])?';
const SUBDOMAIN = `${LABEL}(?:\\.${LABEL})*`;
const SHORT = new RegExp(`^(?<ns>${LABEL})/(?<sa>${SUBDOMAIN})$`);
const LONG = new RegExp(`^(?:spiffe://)?(?<td>${SUBDOMAIN})/ns/(?<ns>${LABEL})/sa/(?<sa>${SUBDOMAIN})$`);

/** Parses a principal; undefined when it has none of the accepted forms. */
export function parsePrincipal(text: string): Principal | undefined {
  const t = text.trim();
  if (t === '*') return { any: true };
  const long = LONG.exec(t)?.groups;
  if (long?.td && long.ns && long.sa) return { trustDomain: long.td, namespace: long.ns, serviceAccount: long.sa };
  if (t.startsWith('spiffe://')) return undefined;
  const short = SHORT.exec(t)?.groups;
  if (short?.ns && short.sa) return { namespace: short.ns, serviceAccount: short.sa };
  return undefined;
}

/** `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`. */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** The normalised form translation emits: the full SPIFFE ID (the written trust domain, else `trustDomain`), or `*`. */
export function normalisePrincipal(p: Principal, trustDomain: string): string {
  if (p.any) return '*';
  return spiffeId(p.trustDomain ?? trustDomain, p.namespace, p.serviceAccount);
}

export const PRINCIPAL_FORMS = '"<namespace>/<service-account>", "<trust-domain>/ns/<ns>/sa/<sa>", "spiffe://<trust-domain>/ns/<ns>/sa/<sa>" or "*"';
