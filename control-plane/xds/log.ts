// Logging for the xDS server: structured error lines always, and a `SKEIN_DEBUG=xds` tracer for the chatty parts.

export type LogFields = Record<string, unknown>;

/** Where the xDS server reports stream errors; tests pass their own to assert on what was logged. */
export interface XdsLog {
  warn(message: string, fields: LogFields): void;
  error(message: string, fields: LogFields): void;
}

function line(level: string, message: string, fields: LogFields): string {
  return JSON.stringify({ time: new Date().toISOString(), level, component: 'xds', message, ...fields });
}

/** One JSON line per event on stderr. */
export const stderrLog: XdsLog = {
  warn: (message, fields) => process.stderr.write(`${line('warn', message, fields)}\n`),
  error: (message, fields) => process.stderr.write(`${line('error', message, fields)}\n`),
};

function debugEnabled(name: string): boolean {
  const list = (process.env.SKEIN_DEBUG ?? '').split(',').map((s) => s.trim());
  return list.includes(name) || list.includes('*');
}

/** A named tracer switched on by SKEIN_DEBUG (comma-separated names, or `*`); a no-op otherwise. */
export function tracer(name: string): (message: string, fields?: LogFields) => void {
  if (!debugEnabled(name)) return () => {};
  return (message, fields = {}) => process.stderr.write(`${line('debug', message, { tracer: name, ...fields })}\n`);
}
