// The proxy benchmark's parts: haproxy configs accepted by haproxy and proxying for real, the report's targets, profiles.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { areaOf, summarizeProfile } from './cpu-profile.ts';
import { Haproxy, haproxyAvailable, inboundConfig, outboundConfig, serverConfig } from './haproxy.ts';
import { getOnce } from './http1-conn.ts';
import { freePort } from './pinned-process.ts';
import { aggregate, checkTargets, renderTable, toJson } from './proxy-report.ts';
import type { ScenarioResult } from './proxy-scenario.ts';
import { benchRegistry, sumSeries } from './sidecar-pair.ts';
import { makeTestCa } from './test-ca.ts';
import { loadAll } from 'js-yaml';

const dir = mkdtempSync(join(tmpdir(), 'skein-proxy-bench-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!haproxyAvailable() || !opensslAvailable())('haproxy pair (TLS + PROXY v2 + routing by Host)', () => {
  it('answers through outbound → inbound → app, and 404 for another Host', async () => {
    const certs = makeTestCa(dir);
    const appPort = await freePort();
    const inPort = await freePort();
    const outPort = await freePort();
    const started: Haproxy[] = [];
    try {
      started.push(await Haproxy.start(dir, 'app', serverConfig('127.0.0.1', appPort, join(dir, 'app.sock')), '127.0.0.1', appPort, undefined));
      const inbound = await Haproxy.start(
        dir,
        'inbound',
        inboundConfig({ listen: '127.0.0.1', port: inPort, appHost: '127.0.0.1', appPort, stats: join(dir, 'inbound.sock'), tls: certs }),
        '127.0.0.1',
        inPort,
        undefined,
      );
      started.push(inbound);
      const outbound = await Haproxy.start(
        dir,
        'outbound',
        outboundConfig({
          listen: '127.0.0.1',
          port: outPort,
          authority: 'bench.default',
          podIp: '127.0.0.1',
          peer: '127.0.0.1',
          peerPort: inPort,
          stats: join(dir, 'outbound.sock'),
          tls: certs,
        }),
        '127.0.0.1',
        outPort,
        undefined,
      );
      started.push(outbound);
      expect(await getOnce('127.0.0.1', outPort, 'bench.default')).toBe(200);
      expect(await getOnce('127.0.0.1', outPort, 'bench.default')).toBe(200);
      expect(await getOnce('127.0.0.1', outPort, 'other.default')).toBe(404);
      const row = (await outbound.stats()).get('bench/inbound');
      // Two requests from two client connections: one connection to the inbound proxy, reused once.
      expect(Number(row?.connect)).toBe(1);
      expect(Number(row?.reuse)).toBe(1);
    } finally {
      await Promise.all(started.map((h) => h.stop()));
    }
  });
});

function result(setup: ScenarioResult['setup'], p50: number, p99: number, rps: number, cpu: Record<string, number>): ScenarioResult {
  const lat = { p50, p90: p50, p99, p999: p99, max: p99, mean: p50 };
  const load = { mode: 'open' as const, count: 1000, errors: 0, non2xx: 0, achievedRate: 1000, latency: lat, service: lat, sendLag: lat, connectionsOpened: 32, queued: 0 };
  return { setup, open: load, seq: { ...load, mode: 'sequential' }, wrk: { requestsPerSec: rps, requests: rps, errors: 0 }, cpuPer1000: cpu, rss: {}, extra: {} };
}

describe('report', () => {
  it('takes per-run differences to direct, medians over runs, and checks the targets', () => {
    const runs = [0.1, 0.12, 0.5].map((noise) => ({
      direct: result('direct', 0.1 + noise, 0.2 + noise, 40000, {}),
      haproxy: result('haproxy', 0.14 + noise, 0.3 + noise, 15000, { outbound: 0.1, inbound: 0.05 }),
      skein: result('skein', 0.2 + noise, 0.35 + noise, 8000, { client: 0.09, server: 0.3 }),
    }));
    const aggs = aggregate(runs);
    const skein = aggs.find((a) => a.setup === 'skein');
    expect(skein?.addedP50).toBeCloseTo(0.1);
    expect(skein?.addedP99).toBeCloseTo(0.15);
    const checks = checkTargets(aggs, { services: 1000, clusters: 1200, rssBytes: 60 * 1024 * 1024, rssAnonBytes: 20 * 1024 * 1024, loadSeconds: 1 });
    const byName = Object.fromEntries(checks.map((c) => [c.name, c.pass]));
    expect(byName["skein added p50 ≤ 2× haproxy's"]).toBe(false); // 0.1 > 2 × 0.04
    expect(byName["skein saturating throughput ≥ 0.5× haproxy's"]).toBe(true);
    expect(byName['skein added p99 ≤ 0.3 ms at the fixed rate']).toBe(true);
    // Direct's own tail longer than the pair's: noise, never a pass.
    const noisy = aggs.map((a) => (a.setup === 'skein' ? { ...a, addedP99: -2 } : a));
    const again = checkTargets(noisy, { services: 1000, clusters: 1200, rssBytes: 60 * 1024 * 1024, rssAnonBytes: 20 * 1024 * 1024, loadSeconds: 1 });
    const p99 = again.find((c) => c.name === 'skein added p99 ≤ 0.3 ms at the fixed rate');
    expect(p99?.pass).toBe(false);
    expect(p99?.detail).toContain('inconclusive');
    expect(byName['skein client sidecar ≤ 0.1 vCPU per 1000 rps']).toBe(true);
    expect(byName['skein server sidecar ≤ 0.1 vCPU per 1000 rps']).toBe(false);
    expect(byName['idle sidecar RSS ≤ 50 MiB with 1000 Services']).toBe(false);
    expect(renderTable(aggs, checks, 1000)).toMatch(/FAIL {2}skein added p50/);
    const json = JSON.parse(toJson({ runs: 3 }, aggs, checks, undefined)) as { ratios: Record<string, number>; pass: boolean };
    expect(json.ratios.skein_vs_haproxy_max_rps).toBeCloseTo(8000 / 15000, 3);
    expect(json.pass).toBe(false);
  });
});

describe('bench helpers', () => {
  it('sums Prometheus series by name and label subset', () => {
    const text = [
      '# HELP skein_tls_handshakes_total x',
      'skein_tls_handshakes_total{direction="outbound",result="ok"} 3',
      'skein_tls_handshakes_total{direction="outbound",result="resumed"} 4',
      'skein_tls_handshakes_total{direction="inbound",result="ok"} 9',
      'skein_upstream_requests_reused_total 120',
    ].join('\n');
    expect(sumSeries(text, ['skein_tls_handshakes_total{direction="outbound"}', 'skein_upstream_requests_reused_total', 'nope'])).toEqual({
      'skein_tls_handshakes_total{direction="outbound"}': 7,
      skein_upstream_requests_reused_total: 120,
      nope: 0,
    });
  });

  it('writes a registry whose endpoint pod names the inbound port', () => {
    const yaml = benchRegistry({ appIp: '127.0.0.3', appPort: 8080, inboundPort: 15006 });
    const docs = loadAll(yaml) as { kind: string; metadata: { name: string; annotations?: Record<string, string> } }[];
    const pod = docs.find((d) => d.kind === 'Pod');
    expect(pod?.metadata.annotations?.['skein.dev/inbound-port']).toBe('15006');
    expect(docs.find((d) => d.kind === 'Service')?.metadata.name).toBe('bench');
  });

  it('summarises a CPU profile by self time within a window, leaving idle out', () => {
    const file = join(dir, 'p.cpuprofile');
    const node = (id: number, name: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName: name, url, lineNumber: 0 }, children });
    writeFileSync(
      file,
      JSON.stringify({
        nodes: [node(1, '(root)', '', [2, 3, 4]), node(2, 'onRequest', 'file:///w/sidecar/listeners/outbound.ts', [5]), node(3, '(idle)', ''), node(4, '(garbage collector)', ''), node(5, 'write', 'node:net')],
        startTime: 1000,
        endTime: 2000,
        samples: [2, 5, 5, 3, 4, 2],
        timeDeltas: [0, 100, 100, 100, 100, 100],
      }),
    );
    const s = summarizeProfile(file);
    expect(s.idleUs).toBe(100);
    expect(s.top[0]).toMatchObject({ name: 'write node:net:1', selfUs: 200 });
    expect(s.areas.map((a) => a.name)).toEqual(expect.arrayContaining(['node:net', 'GC', 'sidecar/listeners/outbound.ts']));
    // A window that only covers the first three samples.
    expect(summarizeProfile(file, 5, { fromUs: 1000, toUs: 1200 }).busyUs).toBe(300);
    expect(areaOf('node:_http_client', 'x')).toBe('node:http');
  });
});
