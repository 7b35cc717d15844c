// SPIFFE IDs on the wire: parse them, and read the one a peer certificate carries (its single URI SAN).
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { X509Certificate as X509Cert } from 'node:crypto';
import { nodeCrypto } from '../builtins.ts';

const { X509Certificate } = nodeCrypto;

export interface SpiffeParts {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>` split into its parts, or undefined if `id` is not of that form. */
export function parseSpiffeId(id: string): SpiffeParts | undefined {
  const m = /^spiffe:\/\/([a-z0-9.\-_]+)\/ns\/([a-z0-9-]+)\/sa\/([a-z0-9.-]+)$/.exec(id);
  if (!m) return undefined;
  return { trustDomain: m[1] ?? '', namespace: m[2] ?? '', serviceAccount: m[3] ?? '' };
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/**
 * The URI entries of a Node `subjectaltname` string (`URI:a, DNS:b, IP Address:c`). Node writes a value holding
 * a comma or quote as a JSON string (`URI:"..."`), so such values are decoded rather than split.
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const out: string[] = [];
  const re = /(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (const m of subjectAltName.matchAll(re)) {
    if (m[1] !== 'URI') continue;
    const raw = m[2] ?? '';
    out.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return out;
}

/**
 * The SPIFFE ID of a certificate: its only URI SAN when that is a spiffe:// URI. A certificate with several URI
 * SANs is not a valid X.509-SVID and yields undefined, as does one with none.
 */
export function spiffeIdOfCertificate(cert: Pick<PeerCertificate, 'subjectaltname'> | X509Cert | undefined): string | undefined {
  if (!cert) return undefined;
  const san = cert instanceof X509Certificate ? cert.subjectAltName : cert.subjectaltname;
  const uris = uriSans(san);
  if (uris.length !== 1 || !uris[0]?.startsWith('spiffe://')) return undefined;
  return uris[0];
}

const peerIds = new WeakMap<TLSSocket, string>();

/** Records the peer identity checked during the handshake (Node frees the peer certificate soon after it). */
export function recordPeerSpiffeId(socket: TLSSocket, id: string): void {
  peerIds.set(socket, id);
}

/**
 * The verified SPIFFE ID of the peer of an mTLS socket, or undefined when unauthenticated. Call it from the
 * handshake event ('secureConnect', 'secure', 'secureConnection') or use sockets made by TlsContexts, which record
 * it then: Node releases the peer certificate after the first session ticket, and a resumed session has none.
 */
export function peerSpiffeId(socket: TLSSocket): string | undefined {
  const known = peerIds.get(socket);
  if (known !== undefined) return known;
  if (!socket.authorized) return undefined;
  const id = spiffeIdOfCertificate(socket.getPeerX509Certificate());
  if (id !== undefined) peerIds.set(socket, id);
  return id;
}
