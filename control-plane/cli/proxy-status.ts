// `skein proxy-status`: per proxy and type, is the config SYNCED, STALE or NACKED; then the text of every NACK.
import { parseArgs } from 'node:util';
import type { ProxyStatus, TypeStatus } from '../xds/index.ts';

export class ProxyStatusFetchError extends Error {
  readonly code = 'SKEIN_CLI_PROXY_STATUS_FETCH';
  constructor(url: string, cause: string) {
    // What answers there speaks something else: most often the xDS port (gRPC over HTTP/2) given for the admin one.
    const question = /HTTP\/1\.1 protocol|HPE_/.test(cause)
      ? 'that port does not speak HTTP/1.1: is it the xDS port (gRPC, 15010 by default)? proxy-status reads the admin port (15014 by default). '
      : 'is the control plane running? ';
    super(`cannot read proxy status from ${url}: ${cause}; ${question}Pass its admin address with --control-plane http://<host>:<port>`);
    this.name = 'ProxyStatusFetchError';
  }
}

const USAGE = `Usage: skein proxy-status [--control-plane http://127.0.0.1:15014 (or HOST:PORT)] [--node <node id>]

Shows, for every proxy connected to the control plane, whether each xDS type it asked for is
SYNCED (ACKed), STALE (sent, not ACKed yet) or NACKED (rejected, with the version), and the
text of every rejection with the resources it names.
`;

const TYPES = ['CDS', 'EDS', 'LDS', 'RDS'] as const;
/** VHDS (virtual hosts as resources of their own, for clients that ask for it) gets a column only when a proxy has it. */
const VHDS = 'VHDS';

function cell(t: TypeStatus | undefined): string {
  if (!t) return 'NOT SENT';
  if (t.state === 'NACKED') return `NACKED (${t.lastNack?.version ?? t.sentVersion ?? '?'})`;
  if (t.state === 'NOT_SENT') return 'NOT SENT';
  return t.state;
}

/** What /debug/proxy-status adds per proxy when the control plane runs the CA. */
interface CertificateView {
  readonly notAfter?: string;
}

/** `23h59m` until the proxy's certificate expires, `EXPIRED`, or `-` when the CA issued it none (mTLS off). */
export function certificateCell(cert: CertificateView | undefined, now = Date.now()): string {
  if (!cert?.notAfter) return '-';
  const ms = Date.parse(cert.notAfter) - now;
  if (!(ms > 0)) return 'EXPIRED';
  const minutes = Math.floor(ms / 60_000);
  return minutes >= 60 ? `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m` : `${minutes}m`;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join('').trimEnd()).join('\n');
}

/** The text `skein proxy-status` prints for a /debug/proxy-status answer. */
export function formatProxyStatus(proxies: readonly (ProxyStatus & { certificate?: CertificateView })[], now = Date.now()): string {
  if (proxies.length === 0) return 'No proxies are connected to the control plane.\n';
  const types: readonly string[] = proxies.some((p) => p.types.some((t) => t.type === VHDS)) ? [...TYPES, VHDS] : TYPES;
  const rows = [['NAME', 'SCOPE', ...types, 'CERT EXPIRES IN', 'MODE', 'AGENT']];
  for (const p of proxies) {
    const byType = new Map(p.types.map((t) => [t.type, t]));
    rows.push([
      p.nodeId,
      p.scope,
      ...types.map((t) => (t === VHDS && !byType.has(t) ? '-' : cell(byType.get(t)))),
      certificateCell(p.certificate, now),
      // A node without ADS: its per-type streams (CDS, EDS, LDS, RDS services) shown as one proxy.
      p.perTypeStreams === undefined ? p.mode.toUpperCase() : `${p.mode.toUpperCase()} (no ADS, ${p.perTypeStreams} streams)`,
      p.userAgent,
    ]);
  }
  let out = `${table(rows)}\n`;
  const nacks: string[] = [];
  for (const p of proxies) {
    for (const t of p.types) {
      const n = t.lastNack;
      if (!n) continue;
      const superseded = t.state === 'NACKED' ? '' : ` (superseded: version ${t.ackedVersion ?? '?'} ACKed since)`;
      const names = n.resourceNames.length > 0 ? `\n    resources: ${n.resourceNames.join(', ')}` : '';
      nacks.push(`${p.nodeId} ${t.type} version ${n.version} rejected at ${n.at}${superseded}:\n    ${n.message}${names}`);
    }
    if (p.unknownTypeUrls.length > 0) nacks.push(`${p.nodeId} asked for types Skein does not serve: ${p.unknownTypeUrls.join(', ')}`);
  }
  if (nacks.length > 0) out += `\nRejected config (NACK):\n${nacks.map((n) => `  ${n}`).join('\n')}\n`;
  return out;
}

export interface Output {
  write(text: string): unknown;
}

/** Runs the subcommand; resolves to the process exit code (0 ok, 1 control plane unreachable, 2 usage). */
export async function runProxyStatus(
  argv: readonly string[],
  out: Output = process.stdout,
  err: Output = process.stderr,
): Promise<number> {
  let values: { 'control-plane'?: string; node?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        'control-plane': { type: 'string', default: 'http://127.0.0.1:15014' },
        node: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    err.write(`${e instanceof Error ? e.message : String(e)}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  const given = values['control-plane'] ?? 'http://127.0.0.1:15014';
  // HOST:PORT (as `skein sidecar --control-plane` takes) means the admin server over http.
  const base = /^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `http://${given}`;
  let url: URL;
  try {
    url = new URL('/debug/proxy-status', base);
  } catch {
    err.write(`--control-plane ${JSON.stringify(given)} is not a URL or HOST:PORT; use e.g. http://127.0.0.1:15014\n`);
    return 2;
  }
  if (values.node !== undefined) url.searchParams.set('node', values.node);
  try {
    const proxies = await fetchStatus(url);
    if (proxies.length === 0 && values.node !== undefined) {
      out.write(`No connected proxy has node ID ${JSON.stringify(values.node)} (\`skein proxy-status\` without --node lists them all).\n`);
      return 1;
    }
    out.write(formatProxyStatus(proxies));
    return 0;
  } catch (e) {
    err.write(`${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

async function fetchStatus(url: URL): Promise<ProxyStatus[]> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    const cause = e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e);
    throw new ProxyStatusFetchError(url.href, cause);
  }
  if (!res.ok) throw new ProxyStatusFetchError(url.href, `HTTP ${res.status} ${(await res.text()).trim()}`);
  const body = (await res.json()) as { proxies?: ProxyStatus[] };
  if (!Array.isArray(body.proxies)) throw new ProxyStatusFetchError(url.href, 'the answer has no "proxies" list');
  return body.proxies;
}
