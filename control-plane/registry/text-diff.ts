// Splits registry text into per-document chunks; after an edit, splits again only the region around the edit.
import { runNow, type Sliced } from '../slices.ts';

/** A piece of the file that starts at a `---` line (or at the top) and runs to the next one. */
export interface Chunk {
  readonly text: string;
  /** 1-based line of the chunk's first line in the file. */
  readonly line: number;
}

/**
 * Splits registry text into chunks at `---` lines at column 0. The YAML spec forbids a line starting with `---` or
 * `...` (followed by a space or the line end) inside any document content, so such a line always starts a new
 * document; `...` lines stay in the chunk they end, which may hold further bare documents (each chunk is parsed as
 * a stream). Directives (`%YAML`) belong to the next `---`, so text with one is parsed whole.
 */
export function splitDocuments(text: string): Chunk[] {
  if (/^%/m.test(text)) return [{ text, line: 1 }];
  const chunks: Chunk[] = [];
  const marker = /^---(?=[ \t\r\n]|$)/gm;
  let start = 0;
  let line = 1;
  let m: RegExpExecArray | null;
  while ((m = marker.exec(text)) !== null) {
    if (m.index === 0) continue;
    chunks.push({ text: text.slice(start, m.index), line });
    line += newlines(text, start, m.index);
    start = m.index;
  }
  chunks.push({ text: text.slice(start), line });
  return chunks;
}

/** A chunk of the previous text at a known offset, with whatever the caller attached to it. */
export interface Placed<T> {
  readonly start: number;
  readonly line: number;
  readonly value: T;
}

/** A chunk of the new text: carried over from the previous text (`value`), or new text to look up (`text`). */
export type Planned<T> = { readonly line: number; readonly text: string; readonly value?: undefined } | { readonly line: number; readonly value: T };

/**
 * Registry text as a string, or as the file's bytes when they are all ASCII (then byte offsets are character
 * offsets, and comparing two versions is a native memcmp instead of a string walk).
 */
export type Source = string | Buffer;

const FIRST_BLOCK = 4096;
const MAX_BLOCK = 1 << 20;

/** Whether a[from, from+n) equals b[bFrom, bFrom+n). */
function sameRange(a: Source, from: number, b: Source, bFrom: number, n: number): boolean {
  if (typeof a === 'string') return a.slice(from, from + n) === (b as string).slice(bFrom, bFrom + n);
  return a.compare(b as Buffer, bFrom, bFrom + n, from, from + n) === 0;
}

function codeAt(s: Source, i: number): number {
  return typeof s === 'string' ? s.charCodeAt(i) : (s[i] as number);
}

/** Length of the common prefix of a and b (growing block compares, then characters). */
export function commonPrefix(a: Source, b: Source): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  for (let block = FIRST_BLOCK; block >= FIRST_BLOCK; ) {
    if (i + block <= n && sameRange(a, i, b, i, block)) {
      i += block;
      block = Math.min(block * 2, MAX_BLOCK);
    } else block >>= 1;
  }
  while (i < n && codeAt(a, i) === codeAt(b, i)) i++;
  return i;
}

/** Length of the common suffix of a and b, at most `max`. */
export function commonSuffix(a: Source, b: Source, max: number): number {
  const n = Math.min(a.length, b.length, max);
  let k = 0;
  for (let block = FIRST_BLOCK; block >= FIRST_BLOCK; ) {
    if (k + block <= n && sameRange(a, a.length - k - block, b, b.length - k - block, block)) {
      k += block;
      block = Math.min(block * 2, MAX_BLOCK);
    } else block >>= 1;
  }
  while (k < n && codeAt(a, a.length - 1 - k) === codeAt(b, b.length - 1 - k)) k++;
  return k;
}

function newlines(text: Source, from: number, to: number): number {
  let n = 0;
  if (typeof text === 'string') {
    for (let i = text.indexOf('\n', from); i !== -1 && i < to; i = text.indexOf('\n', i + 1)) n++;
  } else {
    for (let i = text.indexOf(10, from); i !== -1 && i < to; i = text.indexOf(10, i + 1)) n++;
  }
  return n;
}

/** The text of [from, to) as a string (ASCII bytes decode as latin1: one byte, one character). */
export function sliceText(text: Source, from = 0, to = text.length): string {
  return typeof text === 'string' ? text.slice(from, to) : text.toString('latin1', from, to);
}

/** The first k in [lo, hi) for which `holds` is false (hi if none), where `holds` is true up to some k, then false. */
function firstFailing(lo: number, hi: number, holds: (k: number) => boolean): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (holds(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** An edit located in the chunk list: chunks [front, back) of the previous text are replaced by `middle`. */
export interface Edit<T> {
  readonly front: number;
  readonly back: number;
  /**
   * The chunks between, in order, with their lines in the new text: carried over unchanged from the previous text
   * (`value`: one of the chunks [front, back)), or new text to parse (`text`).
   */
  readonly middle: readonly Planned<T>[];
  /** Where the middle starts (the same offset in both texts). */
  readonly midStart: number;
  /** New length minus old length: the offset shift of the chunks from `back` on. */
  readonly delta: number;
  /** Line shift of the chunks from `back` on. */
  readonly lineShift: number;
}

const DIRECTIVE = /^%/m;

/** Whether a chunk boundary (`---` at a line start, then a blank or the end) starts at `at` of an ASCII buffer. */
function boundaryAt(text: Buffer, at: number): boolean {
  if (at >= text.length || text[at] !== 0x2d || text[at + 1] !== 0x2d || text[at + 2] !== 0x2d) return false;
  const before = text[at - 1];
  if (at > 0 && before !== 0x0a && before !== 0x0d) return false;
  const after = text[at + 3];
  return after === undefined || after === 0x20 || after === 0x09 || after === 0x0d || after === 0x0a;
}

const BOUNDARY_HERE = /^---(?=[ \t\r\n]|$)/my;

/** Whether a chunk boundary starts at `at` of a string (splitDocuments' rule, tested at that one place). */
function boundaryAtString(text: string, at: number): boolean {
  BOUNDARY_HERE.lastIndex = at;
  return BOUNDARY_HERE.test(text);
}

/** The first chunk boundary of `text` after `from` and before `limit` (splitDocuments' rule), else `limit`. */
function nextBoundary(text: Source, from: number, limit: number): number {
  if (typeof text === 'string') {
    const marker = /^---(?=[ \t\r\n]|$)/gm;
    marker.lastIndex = from + 1;
    const m = marker.exec(text);
    return m === null || m.index >= limit ? limit : m.index;
  }
  for (let i = text.indexOf('---', from + 1, 'latin1'); i !== -1 && i < limit; i = text.indexOf('---', i + 1, 'latin1')) {
    if (boundaryAt(text, i)) return i;
  }
  return limit;
}

/**
 * Locates an edit: chunks wholly inside the common prefix or suffix are carried over (their `---` line and the
 * character after it unchanged, so they are still chunks of the new text). Between them, each previous chunk that
 * reappears unchanged in place (edits elsewhere, inserted or deleted chunks around it) is carried over too, so
 * several scattered edits cost what the edited chunks cost; only text that matches no previous chunk is split
 * again. Returns undefined when a full split is as cheap or required.
 */
export function planEdit<T>(previous: Source, chunks: readonly Placed<T>[], text: Source): Edit<T> | undefined {
  return runNow(planEditSteps(previous, chunks, text));
}

/** planEdit as sliced work (slices.ts): it may pause after each chunk of the edited middle. */
export function* planEditSteps<T>(previous: Source, chunks: readonly Placed<T>[], text: Source): Sliced<Edit<T> | undefined> {
  if (chunks.length < 8 || typeof previous !== typeof text) return undefined;
  const p = commonPrefix(previous, text);
  if (p === previous.length && p === text.length) {
    return { front: chunks.length, back: chunks.length, middle: [], midStart: previous.length, delta: 0, lineShift: 0 };
  }
  const s = commonSuffix(previous, text, Math.min(previous.length, text.length) - p);
  const end = (k: number): number => chunks[k + 1]?.start ?? previous.length;
  // Keep chunk k in front if its end boundary (`---` plus one character) lies in the prefix. Chunk ends grow with
  // k, so the kept ones are a run from 0: found by binary search (a large file has thousands of chunks).
  const front = firstFailing(0, chunks.length, (k) => end(k) + 4 <= p && end(k) < previous.length);
  // Keep chunk k at the back if the newline before its `---` lies in the suffix (a run up to the last chunk).
  const suffixStart = previous.length - s;
  const back = firstFailing(Math.min(front + 1, chunks.length), chunks.length, (k) => (chunks[k]?.start ?? 0) - 1 < suffixStart);
  const midStart = front < chunks.length ? (chunks[front]?.start ?? 0) : previous.length;
  const midEndOld = back < chunks.length ? (chunks[back]?.start ?? previous.length) : previous.length;
  const delta = text.length - previous.length;
  const midEndNew = midEndOld + delta;
  if (midEndNew < midStart) return undefined;

  const middle: Planned<T>[] = [];
  // `pos` is always a chunk boundary of the new text, and `line` the line it starts on.
  let pos = midStart;
  let line = front < chunks.length ? (chunks[front]?.line ?? 1) : 1;
  let k = front;
  const span = (j: number): number => {
    const after = chunks[j + 1];
    const c = chunks[j] as Placed<T>;
    return after === undefined ? newlines(previous, c.start, end(j)) : after.line - c.line;
  };
  // Previous chunk j, unchanged, starts at `at` of the new text and still ends at a boundary there.
  const reappears = (j: number, at: number): boolean => {
    const c = chunks[j];
    if (c === undefined || j >= back) return false;
    const len = end(j) - c.start;
    const stop = at + len;
    if (stop > midEndNew) return false;
    if (stop !== midEndNew && !(typeof text === 'string' ? boundaryAtString(text, stop) : boundaryAt(text, stop))) return false;
    return sameRange(previous, c.start, text, at, len);
  };
  while (pos < midEndNew) {
    yield;
    if (k < back && reappears(k, pos)) {
      middle.push({ line, value: (chunks[k] as Placed<T>).value });
      pos += end(k) - (chunks[k] as Placed<T>).start;
      line += span(k);
      k++;
      continue;
    }
    if (k + 1 < back && reappears(k + 1, pos)) {
      k++; // chunk k was deleted
      continue;
    }
    // New text up to the next boundary: a replaced chunk, or an inserted one when chunk k follows it unchanged.
    const next = nextBoundary(text, pos, midEndNew);
    const piece = sliceText(text, pos, next);
    if (DIRECTIVE.test(piece)) return undefined; // directives: the caller parses the whole text
    middle.push({ line, text: piece });
    line += newlines(text, pos, next);
    if (!(k < back && reappears(k, next))) k++;
    pos = next;
  }
  const lineShift = back < chunks.length ? line - (chunks[back]?.line ?? line) : 0;
  return { front, back, middle, midStart, delta, lineShift };
}

/** Plans the chunks of `text` from the chunks of `previous` (see planEdit): carried chunks keep their value. */
export function planChunks<T>(previous: Source, chunks: readonly Placed<T>[], text: Source): Planned<T>[] | undefined {
  const edit = planEdit(previous, chunks, text);
  if (!edit) return undefined;
  const out: Planned<T>[] = [];
  for (const c of chunks.slice(0, edit.front)) out.push({ line: c.line, value: c.value });
  out.push(...edit.middle);
  for (const c of chunks.slice(edit.back)) out.push({ line: c.line + edit.lineShift, value: c.value });
  return out;
}
