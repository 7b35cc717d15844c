// Logging for the xDS server: the XdsLog seam tests replace, backed by the control plane's logger.
import { logger } from '../log.ts';

export type LogFields = Record<string, unknown>;

/** Where the xDS server reports stream errors; tests pass their own to assert on what was logged. */
export interface XdsLog {
  warn(message: string, fields: LogFields): void;
  error(message: string, fields: LogFields): void;
}

const xdsLogger = logger('xds');

/** One JSON line per event on stderr. */
export const stderrLog: XdsLog = xdsLogger;

/** The `SKEIN_DEBUG=xds` tracer (a no-op otherwise). */
export function tracer(_name: 'xds'): (message: string, fields?: LogFields) => void {
  return xdsLogger.debug;
}

/** Whether the `SKEIN_DEBUG=xds` tracer writes (hot paths check it before building trace fields). */
export function tracing(_name: 'xds'): boolean {
  return xdsLogger.debugEnabled;
}
