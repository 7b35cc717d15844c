// Sidecar logging: one JSON line per event on stderr, and per-module debug tracers switched on by SKEIN_DEBUG.

type Fields = Record<string, unknown>;

const enabled = new Set(
  (process.env.SKEIN_DEBUG ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

function write(level: string, module: string, msg: string, fields?: Fields): void {
  const line = { time: new Date().toISOString(), level, side: 'sidecar', pod: process.env.POD_NAME, module, msg, ...fields };
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

/**
 * Warnings and errors are rate-limited per module and message: at most MAX_PER_WINDOW lines in WINDOW_MS, then one
 * line saying how many were left out. A flood of bad connections (thousands a second) must not become thousands of
 * log lines a second, as it did with aborted handshakes.
 */
const WINDOW_MS = 10_000;
const MAX_PER_WINDOW = 20;
interface LogWindow {
  readonly start: number;
  count: number;
  suppressed: number;
  timer: NodeJS.Timeout | undefined;
}
const windows = new Map<string, LogWindow>();

function limited(level: string, module: string, msg: string, fields?: Fields): void {
  const key = `${level}\u0000${module}\u0000${msg}`;
  const now = Date.now();
  let w = windows.get(key);
  if (w === undefined || now - w.start >= WINDOW_MS) {
    if (windows.size >= 1000) windows.clear(); // messages with values in them: forget old windows
    w = { start: now, count: 0, suppressed: 0, timer: undefined };
    windows.set(key, w);
  }
  if (w.count < MAX_PER_WINDOW) {
    w.count++;
    write(level, module, msg, fields);
    return;
  }
  w.suppressed++;
  if (w.timer !== undefined) return;
  const win = w;
  win.timer = setTimeout(() => {
    if (windows.get(key) === win) windows.delete(key);
    write(level, module, `${msg} (${win.suppressed} more like this in ${WINDOW_MS / 1000} s, not logged)`, { suppressed: win.suppressed });
  }, win.start + WINDOW_MS - now);
  win.timer.unref();
}

export interface Logger {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** No-op unless SKEIN_DEBUG names this module (or `*`); check `debugEnabled` before building costly fields. */
  debug(msg: string, fields?: Fields): void;
  readonly debugEnabled: boolean;
}

export function logger(module: string): Logger {
  const debugEnabled = enabled.has(module) || enabled.has('*');
  return {
    info: (msg, fields) => write('info', module, msg, fields),
    warn: (msg, fields) => limited('warn', module, msg, fields),
    error: (msg, fields) => limited('error', module, msg, fields),
    debug: debugEnabled ? (msg, fields) => write('debug', module, msg, fields) : () => {},
    debugEnabled,
  };
}

const warned = new Map<string, number>();

/** Whether a warning for `key` was not given in the last minute (remembers at most 1000 keys). */
export function warnDue(key: string): boolean {
  const now = Date.now();
  const last = warned.get(key);
  if (last !== undefined && now - last < 60_000) return false;
  if (warned.size >= 1000) warned.clear();
  warned.set(key, now);
  return true;
}
