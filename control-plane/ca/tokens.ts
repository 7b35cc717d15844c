// Who is asking for a certificate: the IdentityVerifier seam and local-mode bootstrap tokens (HMAC-SHA256, 0600 secret).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TokenError } from './errors.ts';
import { identityProblem, type WorkloadIdentity } from './issue.ts';
import { assertPrivateFile, ensurePrivateDir, writePrivateFileExclusive } from './store.ts';

/** Turns a bearer token into the namespace and service account it proves. */
export interface IdentityVerifier {
  /** Throws TokenError for a bad, forged or expired token; VerifierUnavailableError when it cannot check now. */
  verify(token: string): Promise<WorkloadIdentity>;
}

export const TOKEN_SECRET_FILE = 'token-secret';
const PREFIX = 'skein1';
export const DEFAULT_TOKEN_TTL_MS = 24 * 3600 * 1000;
export const MAX_TOKEN_TTL_MS = 366 * 24 * 3600 * 1000;

interface Claims {
  ns: string;
  sa: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** Random token id, so two tokens for the same account differ and can be told apart in logs. */
  jti: string;
}

/** Reads `<dir>/token-secret` (0600), creating 32 random bytes there on first use. */
export async function loadOrCreateTokenSecret(dir: string): Promise<Buffer> {
  await ensurePrivateDir(dir);
  const path = join(dir, TOKEN_SECRET_FILE);
  await writePrivateFileExclusive(path, `${randomBytes(32).toString('hex')}\n`);
  await assertPrivateFile(path);
  const hex = (await readFile(path, 'utf8')).trim();
  if (!/^[0-9a-f]{64,}$/.test(hex)) {
    throw new TokenError(`${path} does not hold a hex secret of at least 32 bytes: remove it to make a new one`);
  }
  return Buffer.from(hex, 'hex');
}

function mac(secret: Buffer, payload: string): Buffer {
  return createHmac('sha256', secret).update(`${PREFIX}.${payload}`).digest();
}

export interface MintOptions extends WorkloadIdentity {
  readonly ttlMs?: number;
  readonly now?: Date;
}

export interface MintedToken {
  readonly token: string;
  readonly expiresAt: Date;
  readonly jti: string;
}

/** Makes a bootstrap token `skein1.<claims>.<hmac>` binding one namespace and service account until it expires. */
export function mintBootstrapToken(secret: Buffer, options: MintOptions): MintedToken {
  const problem = identityProblem(options);
  if (problem) throw new TokenError(problem);
  const ttlMs = options.ttlMs ?? DEFAULT_TOKEN_TTL_MS;
  if (!(ttlMs > 0) || ttlMs > MAX_TOKEN_TTL_MS) throw new TokenError(`ttl: ${ttlMs} ms; use more than 0 and at most 366 days`);
  const now = options.now ?? new Date();
  const exp = Math.floor((now.getTime() + ttlMs) / 1000);
  const claims: Claims = { ns: options.namespace, sa: options.serviceAccount, exp, jti: randomBytes(12).toString('hex') };
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const token = `${PREFIX}.${payload}.${mac(secret, payload).toString('base64url')}`;
  return { token, expiresAt: new Date(exp * 1000), jti: claims.jti };
}

export function isBootstrapToken(token: string): boolean {
  return token.startsWith(`${PREFIX}.`);
}

/** Local mode: checks bootstrap tokens made by `skein token` with the CA directory's secret. */
export class BootstrapTokenVerifier implements IdentityVerifier {
  readonly #secret: Buffer;
  readonly #now: () => Date;

  constructor(secret: Buffer, now: () => Date = () => new Date()) {
    this.#secret = secret;
    this.#now = now;
  }

  static async fromDir(dir: string, now?: () => Date): Promise<BootstrapTokenVerifier> {
    return new BootstrapTokenVerifier(await loadOrCreateTokenSecret(dir), now);
  }

  async verify(token: string): Promise<WorkloadIdentity> {
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== PREFIX) {
      throw new TokenError('token: not a Skein bootstrap token (expected skein1.<claims>.<mac>); make one with `skein token`');
    }
    const payload = parts[1] ?? '';
    const given = Buffer.from(parts[2] ?? '', 'base64url');
    const expected = mac(this.#secret, payload);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new TokenError('token: signature does not match this CA (forged, altered, or made for another CA directory)');
    }
    let claims: Partial<Claims>;
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Partial<Claims>;
    } catch (err) {
      throw new TokenError('token: claims are not JSON', { cause: err });
    }
    if (typeof claims.ns !== 'string' || typeof claims.sa !== 'string' || typeof claims.exp !== 'number') {
      throw new TokenError('token: claims lack ns, sa or exp');
    }
    if (claims.exp * 1000 <= this.#now().getTime()) {
      throw new TokenError(
        `token: expired at ${new Date(claims.exp * 1000).toISOString()}; make a new one with \`skein token\``,
      );
    }
    const identity = { namespace: claims.ns, serviceAccount: claims.sa };
    const problem = identityProblem(identity);
    if (problem) throw new TokenError(`token: ${problem}`);
    return identity;
  }
}

/** Parses durations like `24h`, `90m`, `7d`, `1h30m`, `3600s`, `500ms` into milliseconds; undefined if malformed. */
export function parseDurationMs(text: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (const m of text.trim().matchAll(re)) {
    total += Number(m[1]) * (units[m[2] ?? ''] ?? Number.NaN);
    consumed += m[0].length;
  }
  if (consumed === 0 || consumed !== text.trim().length || !Number.isFinite(total)) return undefined;
  return total;
}
