// Control-plane error classes with stable codes; messages say what is wrong and what to do.

export class SkeinControlPlaneError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SkeinControlPlaneError';
    this.code = code;
  }
}

/** A flag or environment variable has a value the control plane cannot use. */
export class ConfigError extends SkeinControlPlaneError {
  constructor(message: string) {
    super('SKEIN_CONFIG_INVALID', message);
    this.name = 'ConfigError';
  }
}
