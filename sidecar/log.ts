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
    warn: (msg, fields) => write('warn', module, msg, fields),
    error: (msg, fields) => write('error', module, msg, fields),
    debug: debugEnabled ? (msg, fields) => write('debug', module, msg, fields) : () => {},
    debugEnabled,
  };
}
