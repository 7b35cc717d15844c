// Where the CA keeps its root: the CaStore interface and the local-directory implementation (0700 dir, 0600 keys).
import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CaStorageError } from './errors.ts';
import { logger } from '../log.ts';

const log = logger('ca');

/** The CA's persistent material, as PEM text. */
export interface CaFiles {
  readonly rootCertPem: string;
  readonly rootKeyPem: string;
  /** Extra roots trusted besides rootCertPem (the old or the next root during a rotation); may be empty. */
  readonly extraTrustPem: string;
}

/** Persistent storage for the CA root. Implementations must keep the key private (file mode, Secret RBAC). */
export interface CaStore {
  /** Where the material lives, for messages (never the key). */
  readonly description: string;
  /** The stored material, or undefined when nothing is stored yet. */
  load(): Promise<CaFiles | undefined>;
  /** Stores `files` unless material already exists; returns what is stored afterwards (another replica may have won). */
  createIfAbsent(files: CaFiles): Promise<CaFiles>;
}

export const ROOT_CERT_FILE = 'root-cert.pem';
export const ROOT_KEY_FILE = 'root-key.pem';
export const TRUST_BUNDLE_FILE = 'trust-bundle.pem';

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** Refuses a secret file that group or others can read or write (like ssh does for private keys). */
export async function assertPrivateFile(path: string): Promise<void> {
  const info = await stat(path);
  if (!info.isFile()) throw new CaStorageError(`${path} is not a regular file: point the CA at a key file`);
  if ((info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
    throw new CaStorageError(
      `${path} has mode ${mode}: a private key must not be accessible by group or others; run chmod 600 ${path}`,
    );
  }
}

/** Creates `dir` with mode 0700 if missing; refuses an existing directory that group or others can write. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await stat(dir);
  if (!info.isDirectory()) throw new CaStorageError(`${dir} is not a directory: give the CA a directory of its own`);
  if ((info.mode & 0o022) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
    throw new CaStorageError(`${dir} has mode ${mode}: others could replace the CA's files; run chmod 700 ${dir}`);
  }
}

/** Writes `content` to `path` with mode 0600 only if `path` does not exist yet; returns false if it did. */
export async function writePrivateFileExclusive(path: string, content: string): Promise<boolean> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  await writeFile(tmp, content, { mode: 0o600, flag: 'wx' });
  try {
    await chmod(tmp, 0o600);
    await link(tmp, path); // atomic, and fails if `path` exists: the first writer wins
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Local mode: `<dir>/root-cert.pem`, `<dir>/root-key.pem` (0600), optional `<dir>/trust-bundle.pem` (extra roots). */
export class DirectoryCaStore implements CaStore {
  readonly dir: string;
  readonly description: string;

  constructor(dir: string) {
    this.dir = dir;
    this.description = `directory ${dir}`;
  }

  async load(): Promise<CaFiles | undefined> {
    await ensurePrivateDir(this.dir);
    const keyPath = join(this.dir, ROOT_KEY_FILE);
    const certPath = join(this.dir, ROOT_CERT_FILE);
    const rootKeyPem = await readOptional(keyPath);
    const rootCertPem = await readOptional(certPath);
    if (rootKeyPem === undefined && rootCertPem === undefined) return undefined;
    if (rootKeyPem === undefined || rootCertPem === undefined) {
      const missing = rootKeyPem === undefined ? keyPath : certPath;
      throw new CaStorageError(
        `${missing} is missing while its pair exists: restore it, or remove both root files to create a new root`,
      );
    }
    await assertPrivateFile(keyPath);
    const extraTrustPem = (await readOptional(join(this.dir, TRUST_BUNDLE_FILE))) ?? '';
    return { rootCertPem, rootKeyPem, extraTrustPem };
  }

  async createIfAbsent(files: CaFiles): Promise<CaFiles> {
    await ensurePrivateDir(this.dir);
    const created = await writePrivateFileExclusive(join(this.dir, ROOT_KEY_FILE), files.rootKeyPem);
    if (!created) {
      log.debug(`root key already exists in ${this.dir}; loading it`);
      // Another control plane won the race and may still be writing the certificate beside its key: give it a moment.
      for (let attempt = 0; ; attempt++) {
        try {
          const existing = await this.load();
          if (existing) return existing;
          if (attempt >= 40) throw new CaStorageError(`${this.dir}: the root files vanished while loading them`);
        } catch (err) {
          if (attempt >= 40 || !(err instanceof CaStorageError) || !err.message.includes('is missing')) throw err;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const certPath = join(this.dir, ROOT_CERT_FILE);
    const tmp = `${certPath}.tmp-${randomBytes(6).toString('hex')}`;
    await writeFile(tmp, files.rootCertPem, { mode: 0o644 });
    await rename(tmp, certPath);
    if (files.extraTrustPem) await writeFile(join(this.dir, TRUST_BUNDLE_FILE), files.extraTrustPem, { mode: 0o644 });
    log.debug(`created a new root in ${this.dir}`);
    return files;
  }
}
