// Which Services an inbound connection is for (clusters with an endpoint at this pod IP and port), and their policy.
import type { AuthzPolicy, ClusterConfig, MeshConfig, MtlsMode } from '../xds/model.ts';
import { type Caller, type Decision, evaluate, type Operation } from './policy.ts';

export interface ServicePolicy {
  /** `<ns>/<name>` (or the cluster name when the control plane did not say). */
  readonly service: string;
  readonly policy: AuthzPolicy;
}

/** What the inbound side enforces for one app port. */
export interface InboundPolicy {
  /** The strictest mode of the matching Services; STRICT when none matches. */
  readonly mode: MtlsMode;
  readonly services: readonly string[];
  /** Policies of the matching Services that have one; every one must allow. */
  readonly authz: readonly ServicePolicy[];
  /** Enforce at L7 (an HTTP server per connection): some policy applies, a Service on the port speaks HTTP, none TCP. */
  readonly l7: boolean;
}

export const NO_SERVICE: InboundPolicy = Object.freeze({ mode: 'STRICT', services: [], authz: [], l7: false });

/** The per-port policies of the pod at `podIp`, computed once per MeshConfig. */
export function buildInboundIndex(mesh: Pick<MeshConfig, 'clusters'>, podIp: string): ReadonlyMap<number, InboundPolicy> {
  const byPort = new Map<number, ClusterConfig[]>();
  for (const c of mesh.clusters.values()) {
    const ports = new Set<number>();
    for (const e of c.endpoints) if (e.address === podIp) ports.add(e.port);
    for (const p of ports) {
      let list = byPort.get(p);
      if (list === undefined) byPort.set(p, (list = []));
      list.push(c);
    }
  }
  const out = new Map<number, InboundPolicy>();
  for (const [port, clusters] of byPort) {
    const seen = new Set<string>();
    let mode: MtlsMode = 'PERMISSIVE';
    const authz: ServicePolicy[] = [];
    let http = false;
    let tcp = false;
    for (const c of clusters) {
      if ((c.mtlsMode ?? 'STRICT') === 'STRICT') mode = 'STRICT';
      const service = c.service ?? c.name;
      if (c.protocol === 'tcp') tcp = true;
      else http = true;
      if (seen.has(service)) continue;
      seen.add(service);
      if (c.authz !== undefined) authz.push({ service, policy: c.authz });
    }
    // A TCP Service is never judged at L7, even with rules on methods or paths: as in Istio, those fields cannot
    // match a TCP connection (an allow rule with them matches nothing, a deny rule with them matches every caller
    // its sources name). Parsing its bytes as HTTP would break the protocol, so a port that one Service declares TCP
    // stays opaque even when another Service on it speaks HTTP and has a policy (its rules are then judged at L4).
    out.set(port, Object.freeze({ mode, services: [...seen], authz, l7: authz.length > 0 && http && !tcp }));
  }
  return out;
}

/** Evaluates every policy; the first denial wins. `service` names the Service that decided (or the last one). */
export function authorize(policy: InboundPolicy, caller: Caller, op: Operation | undefined): Decision & { service: string } {
  let last: Decision & { service: string } = { allowed: true, reason: 'no policy', service: policy.services[0] ?? '' };
  for (const sp of policy.authz) {
    const d = evaluate(sp.policy, caller, op);
    if (!d.allowed) return { ...d, service: sp.service };
    last = { ...d, service: sp.service };
  }
  return last;
}
