// Which scope a node belongs to: gRPC xDS clients share `proxyless`; sidecars and Envoy get `envoy/<namespace>`.
import type { Node__Output } from '../../proto/index.ts';
import { envoyScope, PROXYLESS_SCOPE } from '../translate/names.ts';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A node is proxyless when its user agent is a gRPC library ("gRPC Node", "gRPC Go", ...). */
export function isProxyless(node: Pick<Node__Output, 'user_agent_name'> | null | undefined): boolean {
  return (node?.user_agent_name ?? '').startsWith('gRPC');
}

/**
 * The node's namespace: metadata NAMESPACE, else Istio's id `sidecar~<ip>~<pod>.<ns>~<ns>.svc.<domain>`, else `default`.
 */
export function namespaceOfNode(node: Pick<Node__Output, 'id' | 'metadata'> | null | undefined): string {
  const field = (node?.metadata?.fields as Record<string, { stringValue?: string; string_value?: string }> | undefined)
    ?.NAMESPACE;
  const fromMeta = field?.stringValue ?? field?.string_value;
  if (fromMeta && DNS_LABEL.test(fromMeta)) return fromMeta;
  const parts = (node?.id ?? '').split('~');
  if (parts.length === 4) {
    const fromDomain = parts[3]?.split('.')[0];
    if (fromDomain && DNS_LABEL.test(fromDomain)) return fromDomain;
    const podPart = parts[2] ?? '';
    const fromPod = podPart.slice(podPart.lastIndexOf('.') + 1);
    if (podPart.includes('.') && DNS_LABEL.test(fromPod)) return fromPod;
  }
  return 'default';
}

export function scopeOfNode(node: Node__Output | null | undefined): string {
  return isProxyless(node) ? PROXYLESS_SCOPE : envoyScope(namespaceOfNode(node));
}
