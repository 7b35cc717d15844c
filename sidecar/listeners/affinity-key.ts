// The key a `sessionAffinity: ClientIP` ring hash uses for a caller: its address, or the pod's IP over loopback.

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

/**
 * The caller's address as one key per client pod: the pod's IP when the app called its sidecar over loopback (as
 * every pod's app does without interception, so every pod would otherwise hash alike), IPv4-mapped forms as IPv4.
 */
export function affinityKey(remote: string | undefined, podIp: string | undefined): string | undefined {
  if (remote === undefined || LOOPBACK.test(remote)) return podIp ?? remote;
  return remote.startsWith('::ffff:') ? remote.slice(7) : remote;
}
