// haproxy for the proxy benchmark: the backend server (fixed 1 KiB answer) and an outbound/inbound pair set up like ours.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { PinnedProcess, waitForPort } from './pinned-process.ts';

export const BODY_BYTES = 1024;

/** Client and server certificates for TLS between the two haproxies (PEM files: cert + key in one). */
export interface HaproxyTls {
  readonly caFile: string;
  /** cert+key PEM the outbound haproxy presents. */
  readonly clientPem: string;
  /** cert+key PEM the inbound haproxy presents. */
  readonly serverPem: string;
}

export function haproxyAvailable(): boolean {
  try {
    execFileSync('haproxy', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const GLOBAL = (stats: string): string => `global
  nbthread 1
  maxconn 4000
  stats socket ${stats} mode 600 level user
defaults
  mode http
  option http-keep-alive
  timeout client 300s
  timeout server 300s
  timeout connect 1s
  timeout http-keep-alive 300s
`;

/** The workload: answers every request with 200 and a 1 KiB body, without touching the disk or a script. */
export function serverConfig(host: string, port: number, stats: string): string {
  return `${GLOBAL(stats)}frontend server
  bind ${host}:${port}
  http-request return status 200 content-type text/plain string "${'x'.repeat(BODY_BYTES)}"
`;
}

/**
 * The client-side proxy: routes by Host to the peer's inbound proxy, sending a PROXY v2 header. Like our sidecar
 * (source = pod IP, port 0), the source is made constant, so every client connection's requests can share the
 * pooled connections (`http-reuse always`); with the real client port in the header each would need its own.
 */
export function outboundConfig(o: {
  listen: string;
  port: number;
  authority: string;
  podIp: string;
  peer: string;
  peerPort: number;
  stats: string;
  tls?: HaproxyTls;
}): string {
  const ssl = o.tls ? ` ssl verify required ca-file ${o.tls.caFile} crt ${o.tls.clientPem} alpn http/1.1` : '';
  return `${GLOBAL(o.stats)}frontend outbound
  bind ${o.listen}:${o.port}
  http-request set-src str(${o.podIp})
  http-request set-src-port int(0)
  use_backend bench if { hdr(host) -i ${o.authority} }
  http-request return status 404 content-type text/plain string "no route" if !{ hdr(host) -i ${o.authority} }
backend bench
  http-reuse always
  server inbound ${o.peer}:${o.peerPort} send-proxy-v2${ssl}
`;
}

/** The server-side proxy: accepts the PROXY v2 header (and TLS), forwards to the app over kept-alive connections. */
export function inboundConfig(o: {
  listen: string;
  port: number;
  appHost: string;
  appPort: number;
  stats: string;
  tls?: HaproxyTls;
}): string {
  const ssl = o.tls ? ` ssl crt ${o.tls.serverPem} ca-file ${o.tls.caFile} verify required alpn http/1.1` : '';
  return `${GLOBAL(o.stats)}frontend inbound
  bind ${o.listen}:${o.port} accept-proxy${ssl}
  default_backend app
backend app
  http-reuse always
  server app ${o.appHost}:${o.appPort}
`;
}

export class Haproxy {
  readonly proc: PinnedProcess;
  readonly statsSocket: string;
  private constructor(proc: PinnedProcess, statsSocket: string) {
    this.proc = proc;
    this.statsSocket = statsSocket;
  }

  /** Writes `config` to dir/name.cfg (its stats socket must be dir/name.sock), checks it, starts it pinned to `cpus`. */
  static async start(dir: string, name: string, config: string, host: string, port: number, cpus: string | undefined): Promise<Haproxy> {
    const file = join(dir, `${name}.cfg`);
    writeFileSync(file, config);
    try {
      execFileSync('haproxy', ['-c', '-q', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      throw new Error(`haproxy rejected ${file}: ${(err as { stderr?: Buffer }).stderr?.toString() ?? String(err)}`);
    }
    const proc = new PinnedProcess(`haproxy ${name}`, 'haproxy', ['-db', '-f', file], { cpus });
    await waitForPort(proc, host, port);
    return new Haproxy(proc, join(dir, `${name}.sock`));
  }

  /** `show stat` as rows keyed by "proxy/server" (columns as haproxy names them). */
  async stats(): Promise<Map<string, Record<string, string>>> {
    const text = await new Promise<string>((resolve, reject) => {
      const s = net.connect(this.statsSocket);
      let out = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (out += d));
      s.on('end', () => resolve(out));
      s.on('error', reject);
      s.write('show stat\n');
    });
    const lines = text.split('\n').filter((l) => l !== '');
    const header = (lines.shift() ?? '').replace(/^# /, '').split(',');
    const rows = new Map<string, Record<string, string>>();
    for (const line of lines) {
      const cells = line.split(',');
      const row: Record<string, string> = {};
      header.forEach((h, i) => (row[h] = cells[i] ?? ''));
      rows.set(`${row.pxname}/${row.svname}`, row);
    }
    return rows;
  }

  async stop(): Promise<void> {
    await this.proc.stop(2000);
  }
}
