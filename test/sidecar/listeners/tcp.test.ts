import { describe, it, expect } from 'vitest';
import net from 'node:net';
import { Registry } from 'prom-client';
import { createDataPlane } from '../../../sidecar/listeners/index.ts';
import type { ListenerConfig } from '../../../sidecar/xds/model.ts';
import { cluster, closeServer, endpoint, freePort, listen, mesh, startPair } from './harness.ts';

const DB = 'outbound|5432||db.default.svc.cluster.local';

function exchange(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(data));
    let out = '';
    s.on('data', (c) => (out += c));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
}

describe('opaque TCP listeners', () => {
  it('binds the Service port on its own outbound host and pipes through the peer inbound (PROXY v2)', async () => {
    const seen: string[] = [];
    const echo = net.createServer((s) => {
      seen.push(s.remoteAddress ?? '');
      s.on('data', (c) => s.write(`echo:${c}`));
      s.on('end', () => s.end());
    });
    const appPort = await listen(echo);
    const pair = await startPair([appPort]);
    const servicePort = await freePort();
    const tcp: ListenerConfig = { kind: 'tcp', name: `10.96.0.30_${servicePort}`, version: '1', address: '10.96.0.30', port: servicePort, cluster: DB };
    pair.client.update(mesh([cluster(DB, [endpoint(appPort, pair.inbound)], { protocol: 'tcp' })], [], [tcp]));
    try {
      await waitFor(() => pair.client.tcpListenerStats()[0]?.bound === true);
      expect(await exchange(servicePort, 'hello')).toBe('echo:hello');
      expect(await exchange(servicePort, 'again')).toBe('echo:again');
      expect(seen.length).toBe(2);
      const stat = pair.client.tcpListenerStats()[0]!;
      expect(stat).toMatchObject({ port: servicePort, cluster: DB, bound: true });
    } finally {
      await pair.close();
      await closeServer(echo);
    }
  });

  it('counts connections and bytes per cluster on both sides, an open connection\'s bytes up to each scrape', async () => {
    // The app answers 'pong' (4 bytes) to each 'ping' (4 bytes) and keeps the connection open.
    const app = net.createServer((s) => {
      s.on('data', (c) => s.write('pong'.repeat(c.length / 4)));
      s.on('end', () => s.end());
    });
    const appPort = await listen(app);
    const pair = await startPair([appPort]);
    const servicePort = await freePort();
    const tcp: ListenerConfig = { kind: 'tcp', name: `10.96.0.31_${servicePort}`, version: '1', address: '10.96.0.31', port: servicePort, cluster: DB };
    pair.client.update(mesh([cluster(DB, [endpoint(appPort, pair.inbound)], { protocol: 'tcp' })], [], [tcp]));
    const series = async (registry: Registry, name: string, direction: string, clusterName: string): Promise<number> => {
      const text = await registry.metrics();
      const line = text.split('\n').find((l) => l.startsWith(`${name}{direction="${direction}",cluster="${clusterName}"} `));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const inboundCluster = `inbound|${appPort}||`;
    try {
      await waitFor(() => pair.client.tcpListenerStats()[0]?.bound === true);
      const s = net.connect(servicePort, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      let got = 0;
      s.on('data', (c: Buffer) => (got += c.length));
      s.write('pingping');
      await waitFor(() => got === 8);
      // Still open: opened, not closed, and its bytes so far show.
      expect(await series(pair.clientRegistry, 'skein_tcp_connections_opened_total', 'outbound', DB)).toBe(1);
      expect(await series(pair.clientRegistry, 'skein_tcp_connections_closed_total', 'outbound', DB)).toBe(0);
      expect(await series(pair.clientRegistry, 'skein_tcp_received_bytes_total', 'outbound', DB)).toBe(8);
      expect(await series(pair.clientRegistry, 'skein_tcp_sent_bytes_total', 'outbound', DB)).toBe(8);
      expect(await series(pair.serverRegistry, 'skein_tcp_connections_opened_total', 'inbound', inboundCluster)).toBe(1);
      expect(await series(pair.serverRegistry, 'skein_tcp_received_bytes_total', 'inbound', inboundCluster)).toBe(8);
      expect(await series(pair.serverRegistry, 'skein_tcp_sent_bytes_total', 'inbound', inboundCluster)).toBe(8);
      // More bytes, then the close: counted once, not twice.
      s.end('ping');
      await new Promise((r) => s.once('close', r));
      await waitFor(() => pair.client.tcpListenerStats()[0]?.connections === 0);
      for (let i = 0; i < 100 && (await series(pair.serverRegistry, 'skein_tcp_connections_closed_total', 'inbound', inboundCluster)) === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await series(pair.clientRegistry, 'skein_tcp_connections_closed_total', 'outbound', DB)).toBe(1);
      expect(await series(pair.clientRegistry, 'skein_tcp_received_bytes_total', 'outbound', DB)).toBe(12);
      expect(await series(pair.clientRegistry, 'skein_tcp_sent_bytes_total', 'outbound', DB)).toBe(12);
      expect(await series(pair.serverRegistry, 'skein_tcp_connections_closed_total', 'inbound', inboundCluster)).toBe(1);
      expect(await series(pair.serverRegistry, 'skein_tcp_received_bytes_total', 'inbound', inboundCluster)).toBe(12);
      expect(await series(pair.serverRegistry, 'skein_tcp_sent_bytes_total', 'inbound', inboundCluster)).toBe(12);
    } finally {
      await pair.close();
      await closeServer(app);
    }
  });

  it("never binds a TCP listener on the pod's own app port (the app restarting there would find it taken)", async () => {
    const appPort = await freePort();
    const pair = await startPair([appPort]);
    const own: ListenerConfig = { kind: 'tcp', name: `10.96.0.32_${appPort}`, version: '1', address: '10.96.0.32', port: appPort, cluster: DB };
    pair.server.update(mesh([cluster(DB, [endpoint(appPort, pair.inbound)], { protocol: 'tcp' })], [], [own]));
    try {
      await new Promise((r) => setTimeout(r, 100));
      expect(pair.server.tcpListenerStats()).toEqual([]);
      // The app (not yet started, or restarting) can take its port.
      const app = net.createServer();
      await new Promise<void>((resolve, reject) => app.once('error', reject).listen(appPort, '127.0.0.1', () => resolve()));
      await closeServer(app);
    } finally {
      await pair.close();
    }
  });

  it('gives a port several TCP Services declare to the one in its own namespace, and names the others', async () => {
    const app = (tag: string) =>
      net.createServer((s) => {
        s.on('data', () => s.end(tag));
        s.on('error', () => {});
      });
    const mine = app('mine');
    const theirs = app('theirs');
    const [minePort, theirsPort] = [await listen(mine), await listen(theirs)];
    const pair = await startPair([minePort, theirsPort]);
    const servicePort = await freePort();
    const OTHER = `outbound|${servicePort}||cache.a-team.svc.cluster.local`;
    const MINE = `outbound|${servicePort}||pg.default.svc.cluster.local`;
    const listener = (name: string, address: string, c: string): ListenerConfig => ({ kind: 'tcp', name, version: '1', address, port: servicePort, cluster: c });
    // The other namespace's Service comes first in the config (and first by name): this pod's namespace still wins.
    pair.client.update(
      mesh(
        [cluster(OTHER, [endpoint(theirsPort, pair.inbound)], { protocol: 'tcp' }), cluster(MINE, [endpoint(minePort, pair.inbound)], { protocol: 'tcp' })],
        [],
        [listener('a', '10.96.7.1', OTHER), listener('b', '10.96.6.1', MINE)],
      ),
    );
    try {
      await waitFor(() => pair.client.tcpListenerStats()[0]?.bound === true);
      expect(await exchange(servicePort, 'x')).toBe('mine');
      expect(pair.client.tcpListenerStats()).toMatchObject([{ port: servicePort, cluster: MINE, shadowed: [OTHER] }]);
    } finally {
      await pair.close();
      await closeServer(mine);
      await closeServer(theirs);
    }
  });

  it('reports a bind failure in stats and keeps running; binds on the next update once the port is free', async () => {
    const blocker = net.createServer();
    const taken = await listen(blocker);
    const registry = new Registry();
    const dp = createDataPlane(
      { outbound: { host: '127.0.0.1', port: 0 }, inbound: { host: '127.0.0.1', port: 0 }, appPorts: [], namespace: 'default', podIp: '127.0.0.1' },
      registry,
    );
    await dp.start();
    try {
      const tcp: ListenerConfig = { kind: 'tcp', name: `10.96.0.31_${taken}`, version: '1', address: '10.96.0.31', port: taken, cluster: DB };
      dp.update(mesh([cluster(DB, [endpoint(1)], { protocol: 'tcp' })], [], [tcp]));
      await waitFor(() => dp.tcpListenerStats()[0]?.error !== undefined);
      const stat = dp.tcpListenerStats()[0]!;
      expect(stat.bound).toBe(false);
      expect(stat.error).toContain('EADDRINUSE');
      expect(await registry.metrics()).toMatch(/skein_listener_bind_failures\{listener="10\.96\.0\.31_\d+"\} 1/);
      // The port is freed; the next config that still names the listener binds it (no restart, no removal needed).
      await closeServer(blocker);
      dp.update(mesh([cluster(DB, [endpoint(2)], { protocol: 'tcp' })], [], [{ ...tcp, version: '2' }]));
      await waitFor(() => dp.tcpListenerStats()[0]?.bound === true);
      expect(dp.tcpListenerStats()[0]).toMatchObject({ bound: true, error: undefined });
      expect(await registry.metrics()).toMatch(/skein_listener_bind_failures\{listener="10\.96\.0\.31_\d+"\} 0/);
    } finally {
      await dp.close(50);
      if (blocker.listening) await closeServer(blocker);
    }
  });

  it('closes the client connection when no endpoint is healthy', async () => {
    const pair = await startPair([]);
    const servicePort = await freePort();
    const tcp: ListenerConfig = { kind: 'tcp', name: 'x', version: '1', address: '10.96.0.32', port: servicePort, cluster: DB };
    pair.client.update(mesh([cluster(DB, [], { protocol: 'tcp' })], [], [tcp]));
    try {
      await waitFor(() => pair.client.tcpListenerStats()[0]?.bound === true);
      expect(await exchange(servicePort, 'x')).toBe('');
    } finally {
      await pair.close();
    }
  });

  it('counts a refused upstream as upstream_connect_error and one reset after connecting as upstream_reset', async () => {
    const refusedPort = await freePort();
    // Resets once the client's bytes arrive (a reset at accept can beat the connect's completion: a failed connect then).
    const rude = net.createServer((s) => s.once('data', () => s.resetAndDestroy()));
    const rudePort = await listen(rude);
    const pair = await startPair([]);
    const refusedListen = await freePort();
    const rudeListen = await freePort();
    const REFUSED = 'outbound|1||refused.default.svc.cluster.local';
    const RUDE = 'outbound|2||rude.default.svc.cluster.local';
    const listeners: ListenerConfig[] = [
      { kind: 'tcp', name: 'refused', version: '1', address: '10.96.0.33', port: refusedListen, cluster: REFUSED },
      { kind: 'tcp', name: 'rude', version: '1', address: '10.96.0.34', port: rudeListen, cluster: RUDE },
    ];
    // Straight to the ports (no peer inbound): what each sidecar sees of its own upstream.
    const clusters = [cluster(REFUSED, [endpoint(refusedPort)], { protocol: 'tcp' }), cluster(RUDE, [endpoint(rudePort)], { protocol: 'tcp' })];
    pair.client.update(mesh(clusters, [], listeners));
    const count = async (reason: string): Promise<number> => {
      const m = new RegExp(`skein_local_errors_total\\{reason="${reason}"\\} (\\d+)`).exec(await pair.clientRegistry.metrics());
      return m === null ? 0 : Number(m[1]);
    };
    try {
      await waitFor(() => pair.client.tcpListenerStats().every((l) => l.bound));
      // The client's bytes were never read: its connection may end with a reset rather than a FIN.
      expect(await exchange(refusedListen, 'x').catch(() => '')).toBe('');
      await waitFor(() => pair.client.tcpListenerStats().every((l) => l.connections === 0));
      expect(await count('upstream_connect_error')).toBe(1);
      expect(await count('upstream_reset')).toBe(0);
      await exchange(rudeListen, 'y').catch(() => '');
      await waitFor(() => pair.client.tcpListenerStats().every((l) => l.connections === 0));
      expect(await count('upstream_reset')).toBe(1);
      expect(await count('upstream_connect_error')).toBe(1);
    } finally {
      await pair.close();
      await closeServer(rude);
    }
  });

  it('keeps serving a workload that calls out once a connection at a time while the sidecar drains', async () => {
    const echo = net.createServer((c) => {
      c.on('data', (d) => c.write(`echo:${d}`));
      c.on('end', () => c.end());
    });
    const appPort = await listen(echo);
    const pair = await startPair([appPort]);
    try {
      const servicePort = await freePort();
      const tcp: ListenerConfig = { kind: 'tcp', name: `10.96.0.31_${servicePort}`, version: '1', address: '10.96.0.31', port: servicePort, cluster: DB };
      pair.client.update(mesh([cluster(DB, [endpoint(appPort, pair.inbound)], { protocol: 'tcp' })], [], [tcp]));
      await waitFor(() => pair.client.tcpListenerStats()[0]?.bound === true);
      expect(await exchange(servicePort, 'before')).toBe('echo:before');
      // A 4 s drain: calls 300 ms apart (no connection open in between) keep the workload "not done" for 3 s.
      const closing = pair.client.close(4000);
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 300));
        expect(await exchange(servicePort, `during${i}`)).toBe(`echo:during${i}`);
      }
      await closing;
    } finally {
      await pair.server.close(0);
      await closeServer(echo);
    }
  });

  it('ends, at shutdown, a connection whose listener and cluster were removed (it had gone on until then)', async () => {
    const echo = net.createServer((c) => c.on('data', (d) => c.write(`echo:${d}`)));
    const appPort = await listen(echo);
    const pair = await startPair([appPort]);
    try {
      const servicePort = await freePort();
      const tcp: ListenerConfig = { kind: 'tcp', name: `10.96.0.32_${servicePort}`, version: '1', address: '10.96.0.32', port: servicePort, cluster: DB };
      pair.client.update(mesh([cluster(DB, [endpoint(appPort, pair.inbound)], { protocol: 'tcp' })], [], [tcp]));
      await waitFor(() => pair.client.tcpListenerStats()[0]?.bound === true);
      const session = net.connect(servicePort, '127.0.0.1');
      let got = '';
      session.on('data', (d) => (got += d));
      const ended = new Promise<void>((r) => session.on('close', () => r()));
      session.on('error', () => {});
      session.write('one');
      await waitFor(() => got === 'echo:one');
      // The Service goes: the open session continues, as Envoy drains a removed listener.
      pair.client.update(mesh([], [], []));
      session.write('two');
      await waitFor(() => got === 'echo:oneecho:two');
      expect(got).toBe('echo:oneecho:two');
      const t0 = Date.now();
      await pair.client.close(1000);
      await ended;
      expect(Date.now() - t0).toBeLessThan(3000); // the drain period, not the removed cluster's 30 s
    } finally {
      await pair.server.close(0);
      await closeServer(echo);
    }
  });
});
