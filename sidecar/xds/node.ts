// Builds the xDS Node the sidecar identifies itself with (Istio-style id, Skein metadata the control plane scopes on).
import type { Node } from '../../proto/index.ts';

export interface NodeIdentity {
  readonly ip: string;
  readonly pod: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly inboundPort: number;
  readonly clusterDomain: string;
  /** The sidecar's version (package.json). */
  readonly version: string;
}

export const USER_AGENT_NAME = 'skein-sidecar';

const str = (s: string) => ({ stringValue: s });

/** Istio's node id form: `sidecar~<ip>~<pod>.<ns>~<ns>.svc.<domain>`. */
export function nodeId(id: Pick<NodeIdentity, 'ip' | 'pod' | 'namespace' | 'clusterDomain'>): string {
  return `sidecar~${id.ip}~${id.pod}.${id.namespace}~${id.namespace}.svc.${id.clusterDomain}`;
}

export function buildNode(id: NodeIdentity): Node {
  return {
    id: nodeId(id),
    cluster: `${id.serviceAccount}.${id.namespace}`,
    user_agent_name: USER_AGENT_NAME,
    user_agent_version: id.version,
    metadata: {
      fields: {
        NAMESPACE: str(id.namespace),
        POD_NAME: str(id.pod),
        SERVICE_ACCOUNT: str(id.serviceAccount),
        INBOUND_PORT: str(String(id.inboundPort)),
      },
    },
  };
}

/** Records the workload certificate's expiry in the node metadata (sent when a stream opens: on every reconnect). */
export function setCertNotAfter(node: Node, notAfter: Date): void {
  const fields = node.metadata?.fields as Record<string, { stringValue: string }> | undefined;
  if (fields !== undefined) fields['CERT_NOT_AFTER'] = str(notAfter.toISOString());
}
