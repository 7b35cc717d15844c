// Errors of the xDS server with stable codes.

/** The xDS port could not be bound (in use, no permission, bad address). */
export class XdsBindError extends Error {
  readonly code = 'SKEIN_XDS_BIND';
  readonly address: string;
  constructor(address: string, cause: string) {
    super(`cannot listen for xDS on ${address}: ${cause}; free the port or pick another with --xds-address (or --xds-tls-address)`);
    this.name = 'XdsBindError';
    this.address = address;
  }
}
