// Turns benchmark runs into a readable table, PASS/FAIL lines against the targets, and one JSON line.
import type { PhaseResult, RunResult } from './phases.ts';
import { formatBytes, formatMs, round, type Summary } from './stats.ts';

export interface TargetCheck {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  /** undefined when the runs needed for it were not made (or failed). */
  readonly pass: boolean | undefined;
}

const MB = 1024 * 1024;

export function checkTargets(runs: readonly RunResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  for (const r of runs.filter((r) => r.proxies >= 1000)) {
    const p99 = r.single?.ack.p99 ?? Number.NaN;
    const complete = r.single !== undefined && r.single.missed === 0;
    checks.push({
      name: `${r.proxies} proxies converge on one change (${r.mode})`,
      target: 'p99 ≤ 250 ms',
      measured: r.single ? `p99 ${formatMs(p99)}${complete ? '' : `, ${r.single.missed} missed`}` : (r.error ?? 'not run'),
      pass: r.single ? complete && p99 <= 250 : undefined,
    });
    const rss = Math.max(r.peakRssBytes, r.sampledMaxRssBytes);
    checks.push({
      name: `control-plane steady RSS at ${r.proxies} proxies (${r.mode})`,
      target: 'after the phases ≤ 500 MB',
      measured: `${(r.rssBytes / MB).toFixed(0)} MB`,
      pass: Number.isFinite(r.rssBytes) ? r.rssBytes <= 500 * MB : undefined,
    });
    checks.push({
      name: `control-plane peak RSS at ${r.proxies} proxies (${r.mode})`,
      target: 'peak (VmHWM, first load and initial sync included) ≤ 500 MB',
      measured: `${(rss / MB).toFixed(0)} MB`,
      pass: Number.isFinite(rss) ? rss <= 500 * MB : undefined,
    });
  }
  const sizes = [...new Set(runs.map((r) => r.proxies))];
  for (const n of sizes) {
    const sotw = runs.find((r) => r.proxies === n && r.mode === 'sotw');
    const delta = runs.find((r) => r.proxies === n && r.mode === 'delta');
    if (!sotw || !delta) continue;
    const d = churnOrSingle(delta);
    const w = churnOrSingle(sotw);
    const bytesRatio = ratio(d?.bytesPerChangePerProxy, w?.bytesPerChangePerProxy);
    const undercounted = w && w.missed > 0 ? ` (SotW missed ${w.missed} deliveries in the window: its bytes are undercounted)` : '';
    checks.push({
      name: `delta/SotW bytes per endpoint change per proxy at ${n} proxies`,
      target: '≤ 0.3×',
      measured: Number.isFinite(bytesRatio)
        ? `${bytesRatio.toFixed(3)}× (${formatBytes(d?.bytesPerChangePerProxy ?? Number.NaN)} vs ${formatBytes(w?.bytesPerChangePerProxy ?? Number.NaN)})${undercounted}`
        : 'n/a',
      pass: Number.isFinite(bytesRatio) ? bytesRatio <= 0.3 : undefined,
    });
    // Both directions: what the protocol costs the network (SotW's ACKs repeat the whole subscription). Reported
    // beside the target, which is read on the control plane's sent bytes above.
    const wire = (p: PhaseResult | undefined): number => (p ? p.bytesPerChangePerProxy + p.requestBytesPerChangePerProxy : Number.NaN);
    const wireRatio = ratio(wire(d), wire(w));
    checks.push({
      name: `delta/SotW bytes both ways (responses + ACKs) per endpoint change per proxy at ${n} proxies`,
      target: 'reported',
      measured: Number.isFinite(wireRatio) ? `${wireRatio.toFixed(3)}× (${formatBytes(wire(d))} vs ${formatBytes(wire(w))})` : 'n/a',
      pass: undefined,
    });
    const cpuRatio = ratio(changeCpu(delta), changeCpu(sotw));
    checks.push({
      name: `delta/SotW control-plane CPU for the endpoint changes at ${n} proxies`,
      target: '≤ 0.3×',
      measured: Number.isFinite(cpuRatio)
        ? `${cpuRatio.toFixed(3)}× (${changeCpu(delta).toFixed(2)} s vs ${changeCpu(sotw).toFixed(2)} s)`
        : 'n/a',
      pass: Number.isFinite(cpuRatio) ? cpuRatio <= 0.3 : undefined,
    });
    // A change that touches CDS: SotW resends every cluster, delta the one that changed.
    const ds = delta.serviceChurn;
    const ws = sotw.serviceChurn;
    if (ds && ws) {
      const b = ratio(ds.bytesPerChangePerProxy, ws.bytesPerChangePerProxy);
      checks.push({
        name: `delta/SotW bytes per Service add/remove per proxy at ${n} proxies`,
        target: '≤ 0.3×',
        measured: Number.isFinite(b) ? `${b.toFixed(3)}× (${formatBytes(ds.bytesPerChangePerProxy)} vs ${formatBytes(ws.bytesPerChangePerProxy)})` : 'n/a',
        pass: Number.isFinite(b) ? b <= 0.3 : undefined,
      });
      const c = ratio(ds.controlPlaneCpuSeconds, ws.controlPlaneCpuSeconds);
      checks.push({
        name: `delta/SotW control-plane CPU for the Service adds/removes at ${n} proxies`,
        target: '≤ 0.3×',
        measured: Number.isFinite(c) ? `${c.toFixed(3)}× (${ds.controlPlaneCpuSeconds.toFixed(2)} s vs ${ws.controlPlaneCpuSeconds.toFixed(2)} s)` : 'n/a',
        pass: Number.isFinite(c) ? c <= 0.3 : undefined,
      });
    }
  }
  return checks;
}

function churnOrSingle(r: RunResult): PhaseResult | undefined {
  return r.churn ?? r.single;
}

function changeCpu(r: RunResult): number {
  if (!r.single && !r.churn) return Number.NaN;
  return (r.single?.controlPlaneCpuSeconds ?? 0) + (r.churn?.controlPlaneCpuSeconds ?? 0);
}

function ratio(a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined || !(b > 0)) return Number.NaN;
  return a / b;
}

function lat(s: Summary | undefined): string {
  return s && s.count ? `${formatMs(s.p50)} / ${formatMs(s.p99)}` : '-';
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function renderTable(runs: readonly RunResult[], checks: readonly TargetCheck[], debounceMs: number): string {
  const out: string[] = [];
  out.push(
    table(
      ['proxies', 'mode', 'sync', 'phase', 'changes', 'ACK p50 / p99', 'first resp p50', 'server p50 / p99', 'bytes/chg/proxy', 'EDS resp size', 'CP CPU', 'missed'],
      runs.flatMap((r) => {
        const phases: [string, PhaseResult | undefined][] = [
          ...(r.cold ? [['first change (cold)', r.cold] as [string, PhaseResult]] : []),
          ['single', r.single],
          ['churn 1%/s', r.churn],
          ...(r.serviceChurn ? [['Service add/rm', r.serviceChurn] as [string, PhaseResult]] : []),
        ];
        if (!r.single && !r.churn) {
          return [[String(r.proxies), r.mode, `${r.synced}/${r.proxies} ${r.syncSeconds.toFixed(1)}s`, r.error ?? 'failed']];
        }
        return phases.map(([name, p], i) => [
          i === 0 ? String(r.proxies) : '',
          i === 0 ? r.mode : '',
          i === 0 ? `${r.syncSeconds.toFixed(1)}s` : '',
          name,
          String(p?.changes ?? '-'),
          lat(p?.ack),
          p ? formatMs(p.firstResponse.p50) : '-',
          p?.serverConvergence ? `${formatMs(p.serverConvergence.p50)} / ${formatMs(p.serverConvergence.p99)}` : '-',
          p ? formatBytes(p.bytesPerChangePerProxy) : '-',
          p ? formatBytes(p.edsBytesPerResponse) : '-',
          p ? `${p.controlPlaneCpuSeconds.toFixed(2)}s` : '-',
          String(p?.missed ?? '-'),
        ]);
      }),
    ),
  );
  out.push('');
  out.push(
    table(
      ['proxies', 'mode', 'RSS now', 'RSS peak (VmHWM)', 'initial sync CPU', 'load errors', 'server view: streams / EDS SYNCED / NACKED'],
      runs.map((r) => [
        String(r.proxies),
        r.mode,
        `${(r.rssBytes / MB).toFixed(0)} MB`,
        `${(Math.max(r.peakRssBytes, r.sampledMaxRssBytes) / MB).toFixed(0)} MB`,
        `${r.syncCpuSeconds.toFixed(2)}s`,
        String(r.loadErrors),
        r.serverView ? `${r.serverView.streams} / ${r.serverView.edsSynced} / ${r.serverView.nacked}` : '-',
      ]),
    ),
  );
  out.push('');
  out.push(
    `ACK = file rename → each proxy's ACK of the EDS update holding the change (includes the registry file's watch, ` +
      `read and parse, and the ${debounceMs} ms translation debounce); first resp = rename → first proxy receiving it; ` +
      `server = the control plane's skein_xds_push_convergence_seconds (registry change → ACK, no file parsing). ` +
      `Service add/rm = a Service added (timed: rename → ACK of its endpoints) then removed, each counted as a change ` +
      `for bytes and CPU: it touches CDS, LDS and the route tables, which SotW resends whole.`,
  );
  out.push('');
  out.push('Targets:');
  for (const c of checks) {
    const verdict = c.pass === undefined ? 'N/A ' : c.pass ? 'PASS' : 'FAIL';
    out.push(`  ${verdict}  ${c.name}: ${c.target}; measured ${c.measured}`);
  }
  return out.join('\n');
}

function phaseJson(p: PhaseResult | undefined): object | null {
  if (!p) return null;
  const s = (x: Summary) => ({ count: x.count, p50: round(x.p50), p90: round(x.p90), p99: round(x.p99), max: round(x.max) });
  return {
    changes: p.changes,
    ack_ms: s(p.ack),
    p99_per_change_ms: p.p99PerChange.map((v) => round(v)),
    first_response_ms: s(p.firstResponse),
    missed: p.missed,
    bytes_per_change_per_proxy: round(p.bytesPerChangePerProxy, 0),
    eds_bytes_per_change_per_proxy: round(p.edsBytesPerChangePerProxy, 0),
    request_bytes_per_change_per_proxy: round(p.requestBytesPerChangePerProxy, 0),
    eds_bytes_per_response: round(p.edsBytesPerResponse, 0),
    server_resource_bytes_per_change_per_proxy: round(p.serverBytesPerChangePerProxy, 0),
    control_plane_cpu_s: round(p.controlPlaneCpuSeconds, 3),
    server_convergence_ms: p.serverConvergence
      ? {
          count: p.serverConvergence.count,
          p50: round(p.serverConvergence.p50),
          p99: round(p.serverConvergence.p99),
          mean: round(p.serverConvergence.mean),
        }
      : null,
  };
}

export function toJson(meta: object, runs: readonly RunResult[], checks: readonly TargetCheck[]): string {
  return JSON.stringify({
    bench: 'control-plane',
    ...meta,
    runs: runs.map((r) => ({
      proxies: r.proxies,
      mode: r.mode,
      synced: r.synced,
      sync_s: round(r.syncSeconds, 2),
      sync_cpu_s: round(r.syncCpuSeconds, 2),
      first_change_cold: phaseJson(r.cold),
      single: phaseJson(r.single),
      churn: phaseJson(r.churn),
      service_add_remove: phaseJson(r.serviceChurn),
      rss_mb: round(r.rssBytes / MB),
      peak_rss_mb: round(Math.max(r.peakRssBytes, r.sampledMaxRssBytes) / MB),
      load_errors: r.loadErrors,
      server_view: r.serverView ?? null,
      error: r.error ?? null,
    })),
    targets: checks.map((c) => ({ name: c.name, target: c.target, measured: c.measured, pass: c.pass ?? null })),
  });
}
