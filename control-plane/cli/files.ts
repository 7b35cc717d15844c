// Writing key material for the CLI: a file replaced whole (never written through a symlink or into a file someone else made).
import { randomBytes } from 'node:crypto';
import { chmodSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Writes `text` to `path` with `mode`: into a new file of our own (exclusive create, random name, same directory),
 * then renamed over `path`. A symlink or a file another user created at `path` is replaced, not written through.
 */
export function replaceFile(path: string, text: string, mode: number): void {
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  writeFileSync(tmp, text, { mode, flag: 'wx' });
  try {
    chmodSync(tmp, mode); // the umask may have narrowed or the file system widened it
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
}

/** Refuses a directory that others may write to (they could swap the files written there); undefined if fine. */
export function othersMayWrite(dir: string): string | undefined {
  const mode = statSync(dir).mode & 0o777;
  if ((mode & 0o022) === 0) return undefined;
  return `${dir} has mode ${mode.toString(8).padStart(4, '0')}: others could replace the files written there; use a directory of your own (chmod 700 ${dir})`;
}
