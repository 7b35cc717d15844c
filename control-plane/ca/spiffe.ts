// Workload identities and the Kubernetes-style SPIFFE IDs that name them (spiffe://<td>/ns/<ns>/sa/<sa>).

/** Who the caller proved to be (from a bootstrap token, a Kubernetes service-account token, or its current certificate). */
export interface WorkloadIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** The parts of a Kubernetes-style SPIFFE ID, or undefined if `uri` is not one. */
export function parseSpiffeId(uri: string): (WorkloadIdentity & { trustDomain: string }) | undefined {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  if (!m) return undefined;
  return { trustDomain: m[1] ?? '', namespace: m[2] ?? '', serviceAccount: m[3] ?? '' };
}
