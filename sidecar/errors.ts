// The sidecar's error classes: one per failure, each with a stable `code` (the data path may add its own here).

/** Every code a sidecar error can carry; tests check each class against this table. */
export const SIDECAR_ERROR_CODES = {
  configInvalid: 'SKEIN_CONFIG_INVALID',
  xdsResourceInvalid: 'SKEIN_XDS_RESOURCE_INVALID',
  xdsStream: 'SKEIN_XDS_STREAM',
  adminListen: 'SKEIN_ADMIN_LISTEN',
} as const;

export type SidecarErrorCode = (typeof SIDECAR_ERROR_CODES)[keyof typeof SIDECAR_ERROR_CODES] | (string & {});

/** Base class: `code` is stable and safe to match on; `message` says what failed, where, and what to do. */
export class SkeinSidecarError extends Error {
  readonly code: SidecarErrorCode;
  constructor(code: SidecarErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A CLI flag or environment variable is missing or malformed; `flag` names it (e.g. `--app-port`). */
export class ConfigInvalidError extends SkeinSidecarError {
  readonly flag: string;
  constructor(flag: string, message: string) {
    super(SIDECAR_ERROR_CODES.configInvalid, `${flag}: ${message}`);
    this.flag = flag;
  }
}

/** One or more xDS resources failed validation; `errors` holds each `Kind "name": field.path: problem` line. */
export class XdsResourceInvalidError extends SkeinSidecarError {
  readonly errors: readonly string[];
  constructor(errors: readonly string[]) {
    super(SIDECAR_ERROR_CODES.xdsResourceInvalid, errors.join('; '));
    this.errors = errors;
  }
}

/** The ADS stream failed (connect, protocol, or server error); the client reconnects with backoff. */
export class XdsStreamError extends SkeinSidecarError {
  constructor(message: string, options?: ErrorOptions) {
    super(SIDECAR_ERROR_CODES.xdsStream, message, options);
  }
}

/** The admin server could not listen on its address. */
export class AdminListenError extends SkeinSidecarError {
  constructor(address: string, cause: unknown) {
    super(
      SIDECAR_ERROR_CODES.adminListen,
      `admin server cannot listen on ${address}: ${(cause as Error)?.message ?? String(cause)}; pick a free port with --admin-address`,
      { cause },
    );
  }
}
