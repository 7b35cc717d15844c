// Proxy benchmark report: medians over runs, latency added over direct, ratios to haproxy, targets, table and JSON.
import type { IdleRssResult } from './idle-rss.ts';
import type { ScenarioResult, SetupName } from './proxy-scenario.ts';
import { median } from './stats.ts';

export interface SetupAggregate {
  readonly setup: SetupName;
  readonly runs: number;
  /** Open loop at the fixed rate, ms from the scheduled time (medians over runs). */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  /** Median over runs of (this setup − direct) in the same run, ms. */
  readonly addedP50: number;
  readonly addedP90: number;
  readonly addedP99: number;
  /** Concurrency 1 (one request at a time). */
  readonly c1P50: number;
  readonly addedC1P50: number;
  /** wrk, closed loop. */
  readonly maxRps: number;
  readonly cpuPer1000: Record<string, number>;
  readonly rssBytes: Record<string, number>;
  readonly achievedRate: number;
  /** Errors and non-2xx responses summed over every run and tool. */
  readonly errors: number;
  /** Extra per-setup figures (reused-connection share, handshakes). */
  readonly extra: Record<string, number>;
}

export interface Check {
  readonly name: string;
  readonly value: number;
  readonly limit: number;
  readonly pass: boolean;
  readonly detail: string;
}

const MiB = 1024 * 1024;

function medianOf(results: readonly ScenarioResult[], f: (r: ScenarioResult) => number): number {
  return median(results.map(f).filter((v) => Number.isFinite(v)));
}

/** Groups by run index: results[run][setup]. */
export function aggregate(runs: readonly Partial<Record<SetupName, ScenarioResult>>[]): SetupAggregate[] {
  const names = new Set<SetupName>();
  for (const r of runs) for (const k of Object.keys(r)) names.add(k as SetupName);
  const out: SetupAggregate[] = [];
  for (const name of names) {
    const mine = runs.map((r) => r[name]).filter((x): x is ScenarioResult => x !== undefined);
    const added = (f: (r: ScenarioResult) => number): number =>
      median(
        runs
          .filter((r) => r[name] !== undefined && r.direct !== undefined)
          .map((r) => f(r[name] as ScenarioResult) - f(r.direct as ScenarioResult)),
      );
    const roles = new Set(mine.flatMap((r) => Object.keys(r.cpuPer1000)));
    const cpuPer1000: Record<string, number> = {};
    const rssBytes: Record<string, number> = {};
    for (const role of roles) {
      cpuPer1000[role] = medianOf(mine, (r) => r.cpuPer1000[role] ?? Number.NaN);
      rssBytes[role] = medianOf(mine, (r) => r.rss[role] ?? Number.NaN);
    }
    const extra: Record<string, number> = {};
    for (const k of new Set(mine.flatMap((r) => Object.keys(r.extra)))) extra[k] = medianOf(mine, (r) => r.extra[k] ?? Number.NaN);
    out.push({
      setup: name,
      runs: mine.length,
      p50: medianOf(mine, (r) => r.open.latency.p50),
      p90: medianOf(mine, (r) => r.open.latency.p90),
      p99: medianOf(mine, (r) => r.open.latency.p99),
      addedP50: added((r) => r.open.latency.p50),
      addedP90: added((r) => r.open.latency.p90),
      addedP99: added((r) => r.open.latency.p99),
      c1P50: medianOf(mine, (r) => r.seq.latency.p50),
      addedC1P50: added((r) => r.seq.latency.p50),
      maxRps: medianOf(mine, (r) => r.wrk.requestsPerSec),
      cpuPer1000,
      rssBytes,
      achievedRate: medianOf(mine, (r) => r.open.achievedRate),
      errors: mine.reduce((a, r) => a + r.open.errors + r.open.non2xx + r.seq.errors + r.seq.non2xx + r.wrk.errors, 0),
      extra,
    });
  }
  return out;
}

export function checkTargets(
  aggs: readonly SetupAggregate[],
  idle: IdleRssResult | undefined,
  ours: SetupName = 'skein',
  theirs: SetupName = 'haproxy',
): Check[] {
  const a = aggs.find((x) => x.setup === ours);
  const h = aggs.find((x) => x.setup === theirs);
  const checks: Check[] = [];
  if (a !== undefined && h !== undefined) {
    const limit = 2 * Math.max(h.addedP50, 0);
    checks.push({
      name: `${ours} added p50 ≤ 2× ${theirs}'s`,
      value: a.addedP50,
      limit,
      pass: a.addedP50 <= limit,
      detail: `${us(a.addedP50)} vs ${theirs} ${us(h.addedP50)} (×${ratio(a.addedP50, h.addedP50)})`,
    });
    checks.push({
      name: `${ours} saturating throughput ≥ 0.5× ${theirs}'s`,
      value: a.maxRps,
      limit: 0.5 * h.maxRps,
      pass: a.maxRps >= 0.5 * h.maxRps,
      detail: `${a.maxRps.toFixed(0)} vs ${h.maxRps.toFixed(0)} req/s (×${ratio(a.maxRps, h.maxRps)})`,
    });
  }
  if (a !== undefined) {
    // A negative added p99 means direct's own tail was longer in the same run: noise, not a result. It does not pass.
    checks.push({
      name: `${ours} added p99 ≤ 0.3 ms at the fixed rate`,
      value: a.addedP99,
      limit: 0.3,
      pass: a.addedP99 >= 0 && a.addedP99 <= 0.3,
      detail: a.addedP99 < 0 ? `inconclusive: ${us(a.addedP99)} (direct's own p99 was longer in the same runs)` : `${us(a.addedP99)}`,
    });
    for (const [role, v] of Object.entries(a.cpuPer1000)) {
      checks.push({
        name: `${ours} ${role} sidecar ≤ 0.1 vCPU per 1000 rps`,
        value: v,
        limit: 0.1,
        pass: v <= 0.1,
        detail: `${v.toFixed(3)} CPU-s per 1000 requests`,
      });
    }
  }
  if (idle !== undefined && ours === 'skein') {
    checks.push({
      name: `idle sidecar RSS ≤ 50 MiB with ${idle.services} Services`,
      value: idle.rssBytes / MiB,
      limit: 50,
      pass: idle.rssBytes <= 50 * MiB,
      detail: `${(idle.rssBytes / MiB).toFixed(1)} MiB holding ${idle.clusters} clusters (private/anonymous part ${(idle.rssAnonBytes / MiB).toFixed(1)} MiB)`,
    });
  }
  return checks;
}

function us(ms: number): string {
  return Number.isFinite(ms) ? `${(ms * 1000).toFixed(0)} µs` : '-';
}

function ratio(a: number, b: number): string {
  return Number.isFinite(a / b) && b > 0 ? (a / b).toFixed(2) : '-';
}

function cell(v: number, digits = 0): string {
  return Number.isFinite(v) ? v.toFixed(digits) : '-';
}

export function renderTable(aggs: readonly SetupAggregate[], checks: readonly Check[], rate: number): string {
  const head = [
    'setup',
    `p50@${rate}`,
    'p90',
    'p99',
    '+p50',
    '+p90',
    '+p99',
    'c1 p50',
    'c1 +p50',
    'max rps',
    'CPU-s/1k req',
    'RSS MiB',
    'errors',
  ];
  const rows = aggs.map((a) => [
    a.setup,
    cell(a.p50 * 1000),
    cell(a.p90 * 1000),
    cell(a.p99 * 1000),
    a.setup === 'direct' ? '' : cell(a.addedP50 * 1000),
    a.setup === 'direct' ? '' : cell(a.addedP90 * 1000),
    a.setup === 'direct' ? '' : cell(a.addedP99 * 1000),
    cell(a.c1P50 * 1000),
    a.setup === 'direct' ? '' : cell(a.addedC1P50 * 1000),
    cell(a.maxRps),
    Object.entries(a.cpuPer1000).map(([r, v]) => `${r} ${v.toFixed(3)}`).join(', '),
    Object.entries(a.rssBytes).map(([r, v]) => `${r} ${(v / MiB).toFixed(0)}`).join(', '),
    String(a.errors),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ');
  const out = [
    'latencies in µs (open loop, from the scheduled send time); +: added over direct in the same run, median over runs',
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ];
  const extras = aggs.filter((a) => Object.keys(a.extra).length > 0);
  for (const a of extras) out.push(`${a.setup}: ${Object.entries(a.extra).map(([k, v]) => `${k} ${cell(v, 3)}`).join(', ')}`);
  out.push('', 'targets:');
  for (const c of checks) out.push(`  ${c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
  return out.join('\n');
}

/** One JSON line with every figure (ms, req/s, CPU-s per 1000 requests, bytes) and the ratios to haproxy. */
export function toJson(
  meta: Record<string, unknown>,
  aggs: readonly SetupAggregate[],
  checks: readonly Check[],
  idle: IdleRssResult | undefined,
  profile?: unknown,
): string {
  const by = Object.fromEntries(aggs.map((a) => [a.setup, a]));
  const ratios: Record<string, number | null> = {};
  const pairs: [string, string][] = [
    ['skein', 'haproxy'],
    ['skein-mtls', 'haproxy-tls'],
  ];
  for (const [ours, theirs] of pairs) {
    const a = by[ours];
    const h = by[theirs];
    if (a === undefined || h === undefined) continue;
    const r = (x: number, y: number) => (Number.isFinite(x / y) && y > 0 ? Math.round((x / y) * 1000) / 1000 : null);
    ratios[`${ours}_vs_${theirs}_added_p50`] = r(a.addedP50, h.addedP50);
    ratios[`${ours}_vs_${theirs}_added_p90`] = r(a.addedP90, h.addedP90);
    ratios[`${ours}_vs_${theirs}_added_p99`] = r(a.addedP99, h.addedP99);
    ratios[`${ours}_vs_${theirs}_added_c1_p50`] = r(a.addedC1P50, h.addedC1P50);
    ratios[`${ours}_vs_${theirs}_max_rps`] = r(a.maxRps, h.maxRps);
  }
  return JSON.stringify({
    bench: 'proxy',
    ...meta,
    setups: by,
    ratios,
    idle: idle ?? null,
    targets: checks.map((c) => ({ name: c.name, value: c.value, limit: c.limit, pass: c.pass })),
    pass: checks.every((c) => c.pass),
    ...(profile === undefined ? {} : { profile }),
  });
}
