// Counts the demo's calls per service and replica, and renders the live summary table.
import type { IncomingHttpHeaders } from 'node:http';
import type { ServiceSpec } from './registry.ts';

interface ServiceStats {
  ok: number;
  errors: number;
  perReplica: Map<string, number>;
  latencies: number[];
  lastError?: string;
}

/** One service's endpoints in a sidecar's view, by health. */
export interface MeshEndpoints {
  readonly healthy: number;
  readonly draining: number;
  readonly unhealthy: number;
  /** Addresses of the healthy and draining ones. */
  readonly addresses: readonly string[];
}

const HOP_HEADERS: Record<string, string> = { web: 'x-replica', app: 'x-app-replica', kv: 'x-kv-replica' };

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export class Summary {
  readonly #stats = new Map<string, ServiceStats>();
  /** Per service: its endpoints as the load generator's sidecar holds them (what the mesh serves, not the plan). */
  #endpoints = new Map<string, MeshEndpoints>();
  readonly #notes: string[] = [];
  /** Per service: the peer SPIFFE IDs (and plaintext) its inbound sidecars accepted, with connection counts. */
  #peers = new Map<string, Map<string, number>>();
  #denied: { status: number; reason: string; body: string } | undefined;

  constructor(services: readonly ServiceSpec[]) {
    for (const s of services) this.#stats.set(s.name, { ok: 0, errors: 0, perReplica: new Map(), latencies: [] });
  }

  /** What the load generator's sidecar holds per service (from its admin /clusters?format=json). */
  setEndpoints(endpoints: Map<string, MeshEndpoints>): void {
    this.#endpoints = endpoints;
  }

  /** The addresses the mesh still sends `service`'s requests to (healthy or terminating), or undefined if unknown. */
  endpointAddresses(service: string): readonly string[] | undefined {
    return this.#endpoints.get(service)?.addresses;
  }

  note(text: string): void {
    this.#notes.push(text);
  }

  /** What the inbound sidecars saw (from skein_inbound_connections_total on their admin servers). */
  setPeers(peers: Map<string, Map<string, number>>): void {
    this.#peers = peers;
  }

  /** The one call that must be refused: the load generator straight to kv, which only demo/app may call. */
  recordDenied(status: number, reason: string, body: string): void {
    this.#denied = { status, reason, body: body.trim() };
  }

  /** One call from the load generator: `web.demo` carries the web, app and kv hops in its headers. */
  record(host: string, status: number, ms: number, headers: IncomingHttpHeaders, error?: string): void {
    const entry = host.split('.')[0] ?? host;
    const hops = entry === 'web' ? ['web', 'app', 'kv'] : [entry];
    const ok = status >= 200 && status < 300;
    for (const hop of hops) {
      const stats = this.#stats.get(hop);
      if (!stats) continue;
      if (!ok) {
        stats.errors++;
        stats.lastError = error ?? `HTTP ${status} ${String(headers['x-skein-reason'] ?? '')}`.trim();
        continue;
      }
      stats.ok++;
      // A workload of your own (not started by the launcher) does not name its replica.
      const replica = String(headers[HOP_HEADERS[hop] ?? 'x-replica'] ?? 'other');
      stats.perReplica.set(replica, (stats.perReplica.get(replica) ?? 0) + 1);
      if (hop === entry) stats.latencies.push(ms);
    }
  }

  render(): string {
    const lines = ['', 'service    endpoints  requests  errors  p50 ms  p99 ms  per replica'];
    for (const [name, s] of this.#stats) {
      const sorted = [...s.latencies].sort((a, b) => a - b);
      const eps = this.#endpoints.get(name);
      const epText = eps ? `${eps.healthy}${eps.draining ? `+${eps.draining}t` : ''}${eps.unhealthy ? `+${eps.unhealthy}u` : ''}` : '?';
      const replicas = [...s.perReplica.entries()].sort().map(([r, n]) => `${r}=${n}`).join(' ');
      const p50 = sorted.length ? percentile(sorted, 50).toFixed(2) : '-';
      const p99 = sorted.length ? percentile(sorted, 99).toFixed(2) : '-';
      lines.push(
        `${name.padEnd(10)} ${epText.padStart(9)} ${String(s.ok + s.errors).padStart(9)} ${String(s.errors).padStart(7)} ${p50.padStart(7)} ${p99.padStart(7)}  ${replicas}`,
      );
      if (s.lastError) lines.push(`${''.padEnd(10)} last error: ${s.lastError}`);
    }
    lines.push('endpoints: as the load generator\'s sidecar holds them (+Nt terminating, +Nu not ready, ? not known yet); other: a replica the demo did not start');
    if (this.#peers.size > 0) {
      lines.push('', 'service    callers seen by its inbound sidecars (connections accepted since start, by replicas still running)');
      // In the services' order, as the table above (the peers arrive in whatever order the admin servers answer).
      const order = [...this.#stats.keys()];
      const rank = (name: string): number => (order.includes(name) ? order.indexOf(name) : order.length);
      for (const [name, peers] of [...this.#peers].sort((a, b) => rank(a[0]) - rank(b[0]) || (a[0] < b[0] ? -1 : 1))) {
        const text = [...peers.entries()].sort().map(([p, n]) => `${p}=${n}`).join(' ');
        lines.push(`${name.padEnd(10)} ${text}`);
      }
    }
    if (this.#denied) lines.push('', `loadgen -> kv (direct): HTTP ${this.#denied.status} ${this.#denied.reason}: ${this.#denied.body}`);
    for (const n of this.#notes) lines.push(`  * ${n}`);
    return lines.join('\n');
  }

  /**
   * What the smoke run requires: every hop carried traffic, every replica served, no call failed; the direct call to
   * kv came back 403 rbac_denied; each inbound saw only mTLS callers with the expected identities.
   */
  check(services: readonly string[], expectedCallers: Readonly<Record<string, readonly string[]>> = {}): string[] {
    const problems: string[] = [];
    if (!this.#denied) problems.push('kv (direct from loadgen): the denied call was not made');
    else if (this.#denied.status !== 403 || this.#denied.reason !== 'rbac_denied')
      problems.push(`kv (direct from loadgen): expected 403 rbac_denied, got ${this.#denied.status} ${this.#denied.reason}`);
    for (const [name, expected] of Object.entries(expectedCallers)) {
      const seen = [...(this.#peers.get(name)?.keys() ?? [])].sort();
      if (seen.join(',') !== [...expected].sort().join(','))
        problems.push(`${name}: inbound callers were [${seen.join(', ')}], expected [${expected.join(', ')}]`);
    }
    for (const name of services) {
      const s = this.#stats.get(name);
      if (!s || s.ok === 0) problems.push(`${name}: carried no successful request`);
      else if (s.errors > 0) problems.push(`${name}: ${s.errors} failed calls (last: ${s.lastError})`);
    }
    return problems;
  }
}
