// Data-plane error classes with stable codes, and the local replies (status, x-skein-reason, body) they become.

/** The reasons a sidecar answers a request itself; sent as `x-skein-reason` and counted in skein_local_errors_total. */
export type LocalReason =
  | 'no_route'
  | 'no_cluster'
  | 'no_healthy_endpoint'
  | 'upstream_connect_error'
  | 'upstream_reset'
  | 'upstream_protocol_error'
  | 'timeout'
  | 'bad_request'
  | 'headers_too_large'
  | 'header_timeout'
  | 'direct_response'
  | 'draining'
  | 'rbac_denied'
  | 'no_config'
  | 'upstream_overflow'
  | 'stream_idle_timeout';

export class SkeinDataPlaneError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SkeinDataPlaneError';
    this.code = code;
  }
}

/** A request the sidecar answers itself (no route, no endpoint, upstream failure): status, reason header and text body. */
export class LocalReplyError extends SkeinDataPlaneError {
  readonly status: number;
  readonly reason: LocalReason;
  constructor(code: string, status: number, reason: LocalReason, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = 'LocalReplyError';
    this.status = status;
    this.reason = reason;
  }
}

/** A caller's value quoted in a reply, cut to a readable length (a 50 KB Host must not come back whole). */
function quoted(v: string, max = 256): string {
  return JSON.stringify(v.length > max ? `${v.slice(0, max)}...` : v);
}

export function noRoute(host: string): LocalReplyError {
  return new LocalReplyError(
    'SKEIN_NO_ROUTE',
    404,
    'no_route',
    `no route for host ${quoted(host)}: no virtual host in the outbound route table matches it (check the Service name, namespace and port)`,
  );
}

/** A Host or :authority that is not `host[:port]` (RFC 9110 §7.2, RFC 3986 §3.2.2): 400, as Envoy answers. */
export function invalidAuthority(authority: string): LocalReplyError {
  return badRequest(`invalid Host ${quoted(authority)}: expected host[:port] with no spaces, user info or path`);
}

/** True when `authority` is a reg-name, IPv4 or bracketed IPv6 literal, with an optional numeric port. */
export function isValidAuthority(authority: string): boolean {
  return AUTHORITY.test(authority);
}

const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?$/;

export function noPathRoute(host: string, path: string): LocalReplyError {
  return new LocalReplyError('SKEIN_NO_ROUTE', 404, 'no_route', `no route for host ${quoted(host)} and path ${quoted(path)}`);
}

/** A request that came before the sidecar's first config and waited `waitedMs` for it (0: too many were waiting). */
export function noConfig(waitedMs: number): LocalReplyError {
  const why = waitedMs > 0 ? `after waiting ${waitedMs} ms` : 'and too many requests are already waiting for it';
  return new LocalReplyError(
    'SKEIN_NO_CONFIG',
    503,
    'no_config',
    `the sidecar has no configuration from the control plane yet ${why}: is the control plane reachable? (see the sidecar's log and /ready on its admin port)`,
  );
}

export function noCluster(cluster: string): LocalReplyError {
  return new LocalReplyError(
    'SKEIN_NO_CLUSTER',
    503,
    'no_cluster',
    `cluster ${cluster} is named by a route but is not known to this sidecar (config not yet received?)`,
  );
}

export function noHealthyEndpoint(cluster: string): LocalReplyError {
  return new LocalReplyError(
    'SKEIN_NO_HEALTHY_ENDPOINT',
    503,
    'no_healthy_endpoint',
    `no healthy endpoint for cluster ${cluster}`,
  );
}

/** `e` (a failed connection or a reset) with the likely cause: a STRICT peer refusing this --mtls off sidecar. */
export function mtlsHint(e: LocalReplyError, cluster: string): LocalReplyError {
  return new LocalReplyError(
    e.code,
    e.status,
    e.reason,
    `${e.message}; cluster ${cluster} is STRICT and this sidecar runs with --mtls off: a peer sidecar enforcing STRICT refuses plaintext`,
    { cause: e },
  );
}

/** A gRPC call (always HTTP/2) to a cluster declared HTTP/1.1 broke: the app may not speak HTTP/2 at all. */
export function protocolHint(e: LocalReplyError, cluster: string): LocalReplyError {
  return new LocalReplyError(
    e.code,
    e.status,
    e.reason,
    `${e.message}; this gRPC call went over HTTP/2 to ${cluster}, whose port is declared HTTP/1.1: if the app speaks gRPC, name the port grpc-* or set appProtocol: grpc; if it does not, it cannot answer gRPC`,
    { cause: e },
  );
}

export function upstreamConnectError(code: string, target: string, cause?: unknown): LocalReplyError {
  return new LocalReplyError(
    'SKEIN_UPSTREAM_CONNECT',
    503,
    'upstream_connect_error',
    `upstream connect error: ${code} ${target}`,
    { cause },
  );
}

export function upstreamReset(code: string, target: string, cause?: unknown): LocalReplyError {
  return new LocalReplyError(
    'SKEIN_UPSTREAM_RESET',
    503,
    'upstream_reset',
    `upstream reset: ${code} ${target} (the connection closed before a full response)`,
    { cause },
  );
}

/**
 * The upstream's response is not valid HTTP/1.1 (two Content-Lengths, a bad chunk size, obs-fold...): 502, as
 * Envoy answers for an upstream protocol error. `detail` is the parser's reason.
 */
export function upstreamProtocolError(code: string, target: string, detail: string, cause?: unknown): LocalReplyError {
  return new LocalReplyError(
    'SKEIN_UPSTREAM_PROTOCOL_ERROR',
    502,
    'upstream_protocol_error',
    `upstream protocol error: ${code} ${target} (${detail})`,
    { cause },
  );
}

/** The endpoint's connections are all busy and its queue is full (Envoy's UO: a circuit breaker tripped). */
export function upstreamOverflow(target: string, connections: number, pending: number): LocalReplyError {
  return new LocalReplyError(
    'SKEIN_UPSTREAM_OVERFLOW',
    503,
    'upstream_overflow',
    `upstream overflow: ${target} has ${connections} connections busy and ${pending} requests waiting for one`,
  );
}

export function upstreamTimeout(what: string, ms: number, target: string): LocalReplyError {
  return new LocalReplyError('SKEIN_UPSTREAM_TIMEOUT', 504, 'timeout', `upstream timeout: ${what} took over ${ms} ms (${target})`);
}

/**
 * Nothing moved for `ms` (Envoy's stream_idle_timeout): no response byte, and no request body byte while the body
 * was still due (`uploading`). 408, as Envoy answers it.
 */
export function streamIdleTimeout(ms: number, cluster: string, uploading = false): LocalReplyError {
  const what = uploading ? `no request body bytes from the client and no response from ${cluster}` : `no response from ${cluster}`;
  return new LocalReplyError('SKEIN_STREAM_IDLE_TIMEOUT', 408, 'stream_idle_timeout', `stream idle timeout: ${what} for ${ms} ms (the listener's stream_idle_timeout)`);
}

export function badRequest(detail: string): LocalReplyError {
  return new LocalReplyError('SKEIN_BAD_REQUEST', 400, 'bad_request', `bad request: ${detail}`);
}

export function fragmentInTarget(path: string): LocalReplyError {
  const shown = path.length > 200 ? `${path.slice(0, 200)}…` : path;
  return badRequest(`the request target ${JSON.stringify(shown)} has a fragment (#...): browsers keep fragments to themselves, and HTTP requests may not carry one (RFC 9112 §3.2)`);
}

export function headersTooLarge(limitKb: number): LocalReplyError {
  return new LocalReplyError(
    'SKEIN_HEADERS_TOO_LARGE',
    431,
    'headers_too_large',
    `request headers too large: over ${limitKb} KB`,
  );
}

/** A listener could not bind; reported in stats, never fatal for TCP service listeners. */
export class ListenerBindError extends SkeinDataPlaneError {
  constructor(listener: string, address: string, port: number, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code ?? 'unknown';
    super(
      'SKEIN_LISTENER_BIND',
      `listener ${listener} could not bind ${address}:${port}: ${code} (is the port in use, or the address not local?)`,
      { cause },
    );
    this.name = 'ListenerBindError';
  }
}

/** A PROXY protocol header (v1 or v2) that cannot be parsed. */
export class ProxyProtocolError extends SkeinDataPlaneError {
  constructor(message: string) {
    super('SKEIN_PROXY_PROTOCOL', `PROXY protocol header: ${message}`);
    this.name = 'ProxyProtocolError';
  }
}

/** A load-balancing policy name with no registered picker factory. */
export class UnknownLbPolicyError extends SkeinDataPlaneError {
  constructor(name: string, known: readonly string[]) {
    super('SKEIN_LB_UNKNOWN_POLICY', `unknown load-balancing policy "${name}"; known: ${known.join(', ')}`);
    this.name = 'UnknownLbPolicyError';
  }
}
