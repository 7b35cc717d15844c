// Echoes what a demo process logs that the person at the terminal should see: warnings, errors, registry edits.
import { closeSync, openSync, readSync, statSync } from 'node:fs';

/** Info messages worth a line on the terminal too (the control plane applied or accepted a registry edit). */
const NOTABLE_INFO = new Set(['registry file applied', 'registry file accepted again', 'translation problem cleared']);

/** Fields shown after the message, when present. */
const SHOWN = ['message', 'problem', 'service', 'changedServices'] as const;

export class LogEcho {
  readonly #path: string;
  readonly #label: string;
  #offset = 0;
  #partial = '';

  constructor(path: string, label: string) {
    this.#path = path;
    this.#label = label;
  }

  /** Skips what was logged so far (start-up, which the launcher reports itself). */
  skip(): void {
    try {
      this.#offset = statSync(this.#path).size;
    } catch {
      this.#offset = 0;
    }
    this.#partial = '';
  }

  /** The notable lines logged since the last call (or skip), formatted for the terminal. */
  read(): string[] {
    let size: number;
    try {
      size = statSync(this.#path).size;
    } catch {
      return [];
    }
    if (size <= this.#offset) return [];
    const buf = Buffer.alloc(size - this.#offset);
    const fd = openSync(this.#path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, this.#offset);
    } finally {
      closeSync(fd);
    }
    this.#offset = size;
    const text = this.#partial + buf.toString('utf8');
    const lines = text.split('\n');
    this.#partial = lines.pop() ?? '';
    const out: string[] = [];
    for (const line of lines) {
      const shown = this.#format(line);
      if (shown !== undefined) out.push(shown);
    }
    return out;
  }

  #format(line: string): string | undefined {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return undefined; // not one of our JSON lines (e.g. a stack trace): the log file has it
    }
    const level = String(entry.level ?? '');
    const msg = String(entry.msg ?? '');
    if (level !== 'warn' && level !== 'error' && !(level === 'info' && NOTABLE_INFO.has(msg))) return undefined;
    const details = SHOWN.filter((k) => entry[k] !== undefined).map((k) => `${k}: ${String(entry[k])}`);
    const tag = level === 'info' ? '' : `${level.toUpperCase()} `;
    return `${this.#label}: ${tag}${msg}${details.length ? ` (${details.join('; ')})` : ''}`;
  }
}
