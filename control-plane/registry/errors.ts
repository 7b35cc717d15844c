// Registry error classes with stable codes: an invalid registry file, a missing file, a bad kubeconfig, a sync timeout.

/**
 * A registry file that fails validation; `problems` holds one line per problem (file, document, line, field path).
 * `atStart`: the first read, when there is no last good state to keep serving.
 */
export class RegistryInvalidError extends Error {
  readonly code = 'SKEIN_REGISTRY_INVALID';
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[], atStart = false) {
    const n = problems.length;
    const fix = `fix ${n === 1 ? 'it' : 'them'}`;
    super(
      `${file}: ${n} problem${n === 1 ? '' : 's'} in the registry file; ` +
        (atStart ? `${fix} and start again (nothing was served)` : `${fix} and save again (the last good state stays served)`) +
        `:\n  ${problems.join('\n  ')}`,
    );
    this.name = 'RegistryInvalidError';
    this.problems = problems;
  }
}

/** The registry file does not exist or cannot be read. */
export class RegistryFileMissingError extends Error {
  readonly code = 'SKEIN_REGISTRY_FILE_MISSING';
  constructor(file: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      `registry file ${file} cannot be read (${reason}); create it (see examples/registry.yaml) or pass another path with --registry`,
    );
    this.name = 'RegistryFileMissingError';
  }
}

/** No usable Kubernetes client configuration (in-cluster service account or kubeconfig file). */
export class RegistryKubeconfigError extends Error {
  readonly code = 'SKEIN_REGISTRY_KUBECONFIG';
  constructor(source: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`cannot load Kubernetes client configuration from ${source}: ${reason}; pass --kubeconfig or run in-cluster`);
    this.name = 'RegistryKubeconfigError';
  }
}

/** The Kubernetes informers did not all list once within the allotted time. */
export class RegistrySyncTimeoutError extends Error {
  readonly code = 'SKEIN_REGISTRY_SYNC_TIMEOUT';
  constructor(server: string, pending: readonly string[], timeoutMs: number, lastError: string | undefined) {
    super(
      `kubernetes ${server}: not synced after ${timeoutMs} ms (still waiting for ${pending.join(', ')})` +
        `${lastError ? `; last error: ${lastError}` : ''}; check that the API server is reachable and that the ` +
        `service account may list and watch services, endpointslices, pods, peerauthentications and authorizationpolicies`,
    );
    this.name = 'RegistrySyncTimeoutError';
  }
}

/** Problem codes reported through Registry.onProblem while the last good state stays served. */
export const PROBLEM_INVALID = 'SKEIN_REGISTRY_INVALID';
export const PROBLEM_FILE_MISSING = 'SKEIN_REGISTRY_FILE_MISSING';
export const PROBLEM_WATCH = 'SKEIN_REGISTRY_WATCH';
