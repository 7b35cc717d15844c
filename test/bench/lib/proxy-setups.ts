// Starts what the proxy benchmark compares: the app, the haproxy pair (plain or TLS) and our sidecar pair (plain or mTLS).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Haproxy, inboundConfig, outboundConfig, serverConfig } from './haproxy.ts';
import { freePort } from './pinned-process.ts';
import type { Setup, SetupName } from './proxy-scenario.ts';
import { type SidecarPair, startSidecarPair } from './sidecar-pair.ts';
import { makeTestCa } from './test-ca.ts';

export const CLIENT_IP = '127.0.0.2';
export const SERVER_IP = '127.0.0.3';
export const AUTHORITY = 'bench.default';

const PAUSE_RECORDER = fileURLToPath(new URL('pause-recorder.ts', import.meta.url));
const REUSED = 'skein_upstream_requests_reused_total';
const HANDSHAKES = 'skein_tls_handshakes_total{direction="outbound"}';

export interface Running {
  readonly setups: Setup[];
  readonly appPort: number;
  readonly appPid: number;
  stop(): Promise<void>;
}

/** Figures both pairs report: share of requests on an already open connection, new connections (handshakes) per s. */
function reuseFigures(reused: number, connects: number, requests: number, seconds: number): Record<string, number> {
  return { reused_share: reused / requests, connects_per_s: connects / seconds };
}

async function startHaproxyPair(dir: string, name: SetupName, appPort: number, cpus: string | undefined, tls: boolean): Promise<{ setup: Setup; stop: () => Promise<void> }> {
  const sub = join(dir, name);
  mkdirSync(sub, { recursive: true });
  const certs = tls ? makeTestCa(sub) : undefined;
  const inPort = await freePort(SERVER_IP);
  const outPort = await freePort(CLIENT_IP);
  const inbound = await Haproxy.start(
    sub,
    'inbound',
    inboundConfig({ listen: SERVER_IP, port: inPort, appHost: SERVER_IP, appPort, stats: join(sub, 'inbound.sock'), tls: certs }),
    SERVER_IP,
    inPort,
    cpus,
  );
  let outbound: Haproxy;
  try {
    outbound = await Haproxy.start(
      sub,
      'outbound',
      outboundConfig({
        listen: CLIENT_IP,
        port: outPort,
        authority: AUTHORITY,
        podIp: CLIENT_IP,
        peer: SERVER_IP,
        peerPort: inPort,
        stats: join(sub, 'outbound.sock'),
        tls: certs,
      }),
      CLIENT_IP,
      outPort,
      cpus,
    );
  } catch (err) {
    await inbound.stop();
    throw err;
  }
  const setup: Setup = {
    name,
    host: CLIENT_IP,
    port: outPort,
    authority: AUTHORITY,
    procs: [
      { role: 'outbound', pid: outbound.proc.pid },
      { role: 'inbound', pid: inbound.proc.pid },
    ],
    counters: async () => {
      const row = (await outbound.stats()).get('bench/inbound') ?? {};
      return { connect: Number(row.connect ?? Number.NaN), reuse: Number(row.reuse ?? Number.NaN) };
    },
    derive: (d, requests, seconds) => reuseFigures(d.reuse ?? Number.NaN, d.connect ?? Number.NaN, requests, seconds),
  };
  return { setup, stop: async () => void (await Promise.allSettled([outbound.stop(), inbound.stop()])) };
}

async function startSkeinPair(dir: string, name: SetupName, appPort: number, cpus: string | undefined, mtls: boolean): Promise<{ setup: Setup; pair: SidecarPair }> {
  const sub = join(dir, name);
  mkdirSync(sub, { recursive: true });
  // Each sidecar records its GC pauses for the tail figures (pause-recorder.ts: an observer, no timers).
  const record = ['--import', PAUSE_RECORDER];
  const pair = await startSidecarPair({ dir: sub, appIp: SERVER_IP, appPort, clientIp: CLIENT_IP, cpus, mtls, nodeFlags: { client: record, server: record } });
  const setup: Setup = {
    name,
    host: pair.entry.host,
    port: pair.entry.port,
    authority: AUTHORITY,
    procs: [
      { role: 'client', pid: pair.client.proc.pid, recordsPauses: true },
      { role: 'server', pid: pair.server.proc.pid, recordsPauses: true },
    ],
    counters: () => pair.client.counters([REUSED, HANDSHAKES, 'skein_upstream_connections']),
    // Without mTLS no handshake is counted; new connections show as requests not reused.
    derive: (d, requests, seconds) => ({
      ...reuseFigures(d[REUSED] ?? Number.NaN, mtls ? (d[HANDSHAKES] ?? Number.NaN) : requests - (d[REUSED] ?? 0), requests, seconds),
    }),
  };
  return { setup, pair };
}

/** Starts the app and every named setup (direct always comes first). */
export async function startSetups(dir: string, names: readonly SetupName[], cpus: string | undefined, log: (s: string) => void): Promise<Running> {
  const appPort = await freePort(SERVER_IP);
  const app = await Haproxy.start(dir, 'app', serverConfig(SERVER_IP, appPort, join(dir, 'app.sock')), SERVER_IP, appPort, cpus);
  const setups: Setup[] = [{ name: 'direct', host: SERVER_IP, port: appPort, authority: AUTHORITY, procs: [] }];
  const stops: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    await Promise.allSettled(stops.map((s) => s()));
    await app.stop();
  };
  try {
    for (const name of names) {
      if (name === 'direct') continue;
      if (name === 'haproxy' || name === 'haproxy-tls') {
        const h = await startHaproxyPair(dir, name, appPort, cpus, name === 'haproxy-tls');
        stops.push(h.stop);
        setups.push(h.setup);
      } else {
        const s = await startSkeinPair(dir, name, appPort, cpus, name === 'skein-mtls');
        stops.push(() => s.pair.stop());
        setups.push(s.setup);
      }
      const s = setups[setups.length - 1] as Setup;
      log(`${name}: ${s.host}:${s.port} → app ${SERVER_IP}:${appPort}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { setups, appPort, appPid: app.proc.pid, stop };
}
