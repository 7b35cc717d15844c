// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and per area (our code, node:http, GC, ...).
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  readonly name: string;
  /** Microseconds. */
  readonly selfUs: number;
  /** Share of busy (non-idle) time, percent. */
  readonly pct: number;
}

export interface ProfileSummary {
  readonly totalUs: number;
  readonly idleUs: number;
  readonly busyUs: number;
  readonly top: SelfTime[];
  readonly areas: SelfTime[];
  /** Inclusive (self + callees) time of named functions, percent of busy time. */
  readonly inclusive: SelfTime[];
}

/** Which part of the stack a frame belongs to, from its script URL. */
export function areaOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return 'V8/native (program)';
    return `native ${functionName || '(anonymous)'}`;
  }
  const m = /node:(?:internal\/)?([a-z_0-9]+)/.exec(url);
  if (m) {
    const mod = m[1] as string;
    if (mod.startsWith('http') || mod === '_http_common' || mod === '_http_outgoing' || mod === '_http_incoming' || mod === '_http_server' || mod === '_http_client' || mod === '_http_agent')
      return 'node:http';
    if (mod === 'streams' || mod === 'stream' || mod === '_stream_readable') return 'node:stream';
    if (mod === 'net' || mod === 'stream_base_commons') return 'node:net';
    if (mod === 'timers') return 'node:timers';
    if (mod === 'events' || mod === 'event_target') return 'node:events';
    if (mod === 'process' || mod === 'async_hooks') return 'node:process/async';
    return `node:${mod}`;
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] as string;
  const own = /\/(sidecar|control-plane|proto)\/(.*)$/.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  return url;
}

/**
 * `window`: only samples taken within [fromUs, toUs] of the monotonic clock (V8's profile clock, the same as
 * process.hrtime on Linux), so start-up (module loading, type stripping) stays out of a load window's figures.
 */
export function summarizeProfile(file: string, topN = 25, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfById = new Map<number, number>();
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    at += p.timeDeltas[i] ?? 0;
    if (window !== undefined && (at < window.fromUs || at > window.toUs)) continue;
    // timeDeltas[i] is the time since the previous sample; the next delta is the time this sample stood for.
    const dt = p.timeDeltas[i + 1] ?? 0;
    const id = p.samples[i] as number;
    selfById.set(id, (selfById.get(id) ?? 0) + dt);
  }
  const fnKey = (n: ProfileNode): string => {
    const f = n.callFrame;
    const where = f.url === '' ? '' : ` ${f.url.replace(/^.*\/(sidecar|node_modules)\//, '$1/').replace(/^file:\/\//, '')}:${f.lineNumber + 1}`;
    return `${f.functionName || '(anonymous)'}${where}`;
  };
  const selfByFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  const inclusiveByFn = new Map<string, number>();
  let idle = 0;
  let total = 0;
  for (const [id, us] of selfById) {
    const n = byId.get(id);
    if (n === undefined) continue;
    total += us;
    const area = areaOf(n.callFrame.url, n.callFrame.functionName);
    if (area === 'idle') {
      idle += us;
      continue;
    }
    selfByFn.set(fnKey(n), (selfByFn.get(fnKey(n)) ?? 0) + us);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
    // Inclusive: charge every distinct function on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const node = byId.get(cur);
      if (node === undefined) break;
      const k = fnKey(node);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusiveByFn.set(k, (inclusiveByFn.get(k) ?? 0) + us);
    }
  }
  const busy = total - idle;
  const rank = (m: Map<string, number>, n: number): SelfTime[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, selfUs: us, pct: busy > 0 ? (us / busy) * 100 : 0 }));
  const inclusive = rank(inclusiveByFn, topN * 3).filter((s) => !s.name.startsWith('(root)') && !/^\(program\)|^\(garbage/.test(s.name));
  return { totalUs: total, idleUs: idle, busyUs: busy, top: rank(selfByFn, topN), areas: rank(byArea, 20), inclusive: inclusive.slice(0, topN) };
}

export function formatProfile(title: string, s: ProfileSummary): string {
  const lines = [
    `${title}: busy ${(s.busyUs / 1e6).toFixed(2)} s of ${(s.totalUs / 1e6).toFixed(2)} s sampled`,
    '  self time by area:',
    ...s.areas.map((a) => `    ${a.pct.toFixed(1).padStart(5)}%  ${a.name}`),
    '  top functions by self time:',
    ...s.top.map((a) => `    ${a.pct.toFixed(1).padStart(5)}%  ${a.name}`),
    '  top functions by inclusive time:',
    ...s.inclusive.map((a) => `    ${a.pct.toFixed(1).padStart(5)}%  ${a.name}`),
  ];
  return lines.join('\n');
}
