// Incremental parsing of a multi-document registry file: split at document markers, parse and validate only new text.
import type { Kind } from './objects.ts';
import { normalize, normalizePolicy } from './objects.ts';
import type { PolicyKind } from './registry.ts';
export { splitDocuments } from './text-diff.ts';
import { type Chunk, type Edit, planEditSteps, type Placed as PlacedChunk, type Planned, type Source, sliceText, splitDocuments } from './text-diff.ts';
import { type CheckedObject, checkDocument, type DocumentInput, type DocumentPosition, type Identified, joinDocuments } from './validate.ts';
import { firstContentLine, parseYamlStream } from './yaml-stream.ts';
import { runNow, runSliced, type Sliced, type SlicedResult } from '../slices.ts';

/** A valid object as cached: validated and normalized once, the same frozen object for as long as its text stays. */
export interface ParsedObject {
  readonly kind: Kind | PolicyKind;
  readonly id: string;
  readonly label: string;
  readonly prefix: string;
  /** client-node's shape for Service/EndpointSlice/Pod, a SkeinPolicy for policies; deeply frozen. */
  readonly value: object;
  /** Paths of fields Kubernetes does not know (see CheckedObject). */
  readonly unknownFields?: readonly string[];
}

/** A cached chunk: its own copy of the text (the map key) and its documents. */
interface CachedChunk {
  readonly text: string;
  readonly docs: readonly CachedDocument[];
}

/** One document of a chunk: its first line relative to the chunk and its objects. */
interface CachedDocument {
  readonly relLine: number;
  readonly objects: readonly ParsedObject[];
}

export interface ParseOutcome {
  /** Every valid object in file order (meaningful only when there are no problems). */
  readonly objects: ParsedObject[];
  readonly problems: string[];
  /** How many chunks were parsed and validated now, and how many came from the cache. */
  readonly fresh: number;
  readonly cached: number;
  /** The values of objects parsed now (from new text); every other value is the cached object of earlier parses. */
  readonly freshValues: ReadonlySet<object>;
  /**
   * Set when only the documents around one edit were looked at (no problems): the objects of the replaced
   * documents and of their replacements, in file order. `objects` is then built on first access.
   */
  readonly delta?: { readonly removed: readonly ParsedObject[]; readonly added: readonly ParsedObject[] };
}

function toParsed(o: CheckedObject): ParsedObject {
  const value =
    o.kind === 'Service' || o.kind === 'EndpointSlice' || o.kind === 'Pod' ? normalize(o.kind, o.raw) : normalizePolicy(o.kind, o.raw);
  return { kind: o.kind, id: o.id, label: o.label, prefix: o.prefix, value, ...(o.unknownFields ? { unknownFields: o.unknownFields } : {}) };
}

interface Placed {
  readonly pos: DocumentPosition;
  readonly objects: readonly Identified[];
  readonly problems: readonly string[];
}

/**
 * Remembers each valid chunk's parsed documents keyed by the chunk's exact text. parse() reuses them for text it
 * has seen and keeps only the chunks of the latest parse (plus, after a rejected parse, those of the last good
 * one). A chunk with a problem is never cached, so its messages are always worded for where it is now.
 */
export class DocumentCache {
  /** Chunk text → its documents; the key is the entry's own flat copy of the text (see parse()). */
  private chunks = new Map<string, CachedChunk>();
  /** The last good text and where its chunks start, to split only around the next edit. */
  private last: { readonly text: Source; readonly chunks: readonly PlacedChunk<CachedChunk>[] } | undefined;
  /** How many objects of the last good parse have each id (all 1: it had no duplicates). */
  private ids = new Map<string, number>();

  get size(): number {
    return this.chunks.size;
  }

  /**
   * Parses and validates `text` (a string, or the bytes of an all-ASCII file); objects keep their identity while
   * their chunk's text is unchanged.
   */
  parse(file: string, text: Source): ParseOutcome {
    return runNow(this.parseSteps(file, text));
  }

  /**
   * parse() in slices: the event loop gets a turn between documents once a slice has run for `sliceMs` (a large
   * edit takes seconds). The cache must not be used by another parse until this one is done.
   */
  parseSliced(file: string, text: Source, sliceMs?: number): SlicedResult<ParseOutcome> {
    return runSliced(this.parseSteps(file, text), sliceMs);
  }

  private *parseSteps(file: string, text: Source): Sliced<ParseOutcome> {
    const edit = this.last && (yield* planEditSteps(this.last.text, this.last.chunks, text));
    const outcome = edit ? yield* this.parseEdit(file, text, edit) : undefined;
    return outcome ?? (yield* this.parseAll(file, text, edit));
  }

  /**
   * The cost of one edit in a large file: parses the new chunks between the carried-over ones and checks ids
   * against the counts of the last good parse. Undefined when the edit has a problem (the full path words it).
   */
  private *parseEdit(file: string, text: Source, edit: Edit<CachedChunk>): Sliced<ParseOutcome | undefined> {
    const last = this.last;
    if (!last) return undefined;
    const fresh: CachedChunk[] = [];
    const middle: CachedChunk[] = [];
    // Chunks carried over in place are neither removed nor added: count them to leave them out of both.
    const carried = new Map<CachedChunk, number>();
    const added: ParsedObject[] = [];
    for (const chunk of edit.middle) {
      if (chunk.value !== undefined) {
        carried.set(chunk.value, (carried.get(chunk.value) ?? 0) + 1);
        middle.push(chunk.value);
        continue;
      }
      let entry = this.chunks.get(chunk.text);
      if (!entry) {
        const outcome = parseChunk(file, chunk.text);
        if ('problems' in outcome) return undefined;
        entry = outcome.entry;
        fresh.push(entry);
        yield;
      }
      for (const doc of entry.docs) added.push(...doc.objects);
      middle.push(entry);
    }
    const removed: ParsedObject[] = [];
    for (let k = edit.front; k < edit.back; k++) {
      const entry = last.chunks[k]?.value;
      if (entry === undefined) continue;
      const n = carried.get(entry) ?? 0;
      if (n > 0) {
        carried.set(entry, n - 1);
        continue;
      }
      for (const doc of entry.docs) removed.push(...doc.objects);
    }
    const counts = this.ids;
    for (const o of removed) counts.set(o.id, (counts.get(o.id) ?? 1) - 1);
    let duplicate = false;
    for (const [i, o] of added.entries()) {
      const n = (counts.get(o.id) ?? 0) + 1;
      counts.set(o.id, n);
      if (n > 1) duplicate = true;
      if (i % 1000 === 999) yield;
    }
    if (duplicate) {
      // Undo: the full path reports the duplicate with both places.
      for (const o of added) counts.set(o.id, (counts.get(o.id) ?? 1) - 1);
      for (const o of removed) counts.set(o.id, (counts.get(o.id) ?? 0) + 1);
      return undefined;
    }
    for (const o of removed) if (counts.get(o.id) === 0) counts.delete(o.id);
    // From here on the cache's own state changes: the loops pause (a large edit has 100 000 chunks) but are not left.
    const placements: PlacedChunk<CachedChunk>[] = last.chunks.slice(0, edit.front);
    let offset = edit.midStart;
    for (const [i, chunk] of edit.middle.entries()) {
      if (i % 2000 === 1999) yield;
      const entry = middle[i] as CachedChunk;
      placements.push({ start: offset, line: chunk.line, value: entry });
      offset += entry.text.length;
    }
    for (let k = edit.back; k < last.chunks.length; k++) {
      if (k % 2000 === 1999) yield;
      const c = last.chunks[k] as PlacedChunk<CachedChunk>;
      placements.push({ start: c.start + edit.delta, line: c.line + edit.lineShift, value: c.value });
    }
    // Stale entries are harmless (an entry is valid for its exact text): drop them only when they pile up.
    for (const [i, entry] of fresh.entries()) {
      if (i % 2000 === 1999) yield;
      this.chunks.set(entry.text, entry);
    }
    if (this.chunks.size > 2 * placements.length + 1000) this.chunks = new Map(placements.map((p) => [p.value.text, p.value]));
    this.last = { text, chunks: placements };
    const freshValues = new Set<object>();
    for (const [i, entry] of fresh.entries()) {
      if (i % 2000 === 1999) yield;
      for (const doc of entry.docs) for (const o of doc.objects) freshValues.add(o.value);
    }
    let objects: ParsedObject[] | undefined;
    return {
      get objects() {
        objects ??= placements.flatMap((p) => p.value.docs.flatMap((d) => d.objects));
        return objects;
      },
      problems: [],
      fresh: fresh.length,
      cached: placements.length - fresh.length,
      freshValues,
      delta: { removed, added },
    };
  }

  private *parseAll(file: string, source: Source, edit: Edit<CachedChunk> | undefined): Sliced<ParseOutcome> {
    const next = new Map<string, CachedChunk>();
    const placed: Placed[] = [];
    let index = 0;
    let fresh = 0;
    let cached = 0;
    let valid = true;
    const placements: PlacedChunk<CachedChunk>[] = [];
    const freshValues = new Set<object>();
    let offset = 0;
    const last = this.last;
    const planned: Planned<CachedChunk>[] =
      last && edit
        ? [
            ...last.chunks.slice(0, edit.front).map((c) => ({ line: c.line, value: c.value })),
            ...edit.middle,
            ...last.chunks.slice(edit.back).map((c) => ({ line: c.line + edit.lineShift, value: c.value })),
          ]
        : splitDocuments(sliceText(source)).map((c: Chunk) => ({ line: c.line, text: c.text }));
    for (const chunk of planned) {
      let entry = chunk.value ?? (this.chunks.get(chunk.text) || next.get(chunk.text));
      if (entry) cached++;
      else if (chunk.value === undefined) {
        fresh++;
        yield;
        const outcome = parseChunk(file, chunk.text);
        if ('problems' in outcome) {
          // Problems are worded with the document's place: check again with the real positions.
          valid = false;
          for (const c of outcome.problems) {
            const pos = { index: index++, line: chunk.line + c.relLine - 1 };
            const doc: DocumentInput = 'syntax' in c.doc ? { syntax: { ...c.doc.syntax, line: chunk.line + c.doc.syntax.line - 1 } } : c.doc;
            placed.push({ pos, ...checkDocument(file, doc, pos) });
          }
          continue;
        }
        entry = outcome.entry;
        for (const doc of entry.docs) for (const o of doc.objects) freshValues.add(o.value);
      }
      if (!entry) continue;
      next.set(entry.text, entry);
      placements.push({ start: offset, line: chunk.line, value: entry });
      offset += entry.text.length;
      for (const doc of entry.docs) placed.push({ pos: { index: index++, line: chunk.line + doc.relLine - 1 }, objects: doc.objects, problems: [] });
    }
    const { objects, problems } = joinDocuments(file, placed);
    if (valid && problems.length === 0) {
      this.chunks = next;
      this.last = { text: source, chunks: placements };
      this.ids = new Map();
      for (const o of objects) this.ids.set(o.id, 1);
    } else if (this.chunks.size > 2 * next.size + 1000) this.chunks = next;
    else for (const [key, kept] of next) this.chunks.set(key, kept);
    // Without problems every document came from the cache path, so every object is a ParsedObject.
    return { objects: objects as ParsedObject[], problems, fresh, cached, freshValues };
  }
}

/** A document of a chunk that has a problem, positioned within the chunk (lines 1-based). */
interface ChunkProblem {
  readonly relLine: number;
  readonly doc: { readonly value: unknown } | { readonly syntax: { readonly reason: string; readonly line: number; readonly column: number } };
}

/** Parses and checks a chunk not seen before: its cache entry, or its documents when any has a problem. */
function parseChunk(file: string, text: string): { entry: CachedChunk } | { problems: ChunkProblem[] } {
  // A slice of the file text keeps the whole file alive (V8 sliced strings), and so would every string the
  // parser cuts from it: parse and key a copy, so a cached document holds only its own text.
  const own = Buffer.from(text, 'utf8').toString('utf8');
  const parsed = parseYamlStream(own);
  if ('error' in parsed) {
    // The parse stopped: the chunk counts as one document, placed where its content starts.
    const { line, column, reason } = parsed.error;
    return { problems: [{ relLine: firstContentLine(own), doc: { syntax: { reason, line, column } } }] };
  }
  const checks = parsed.documents.map((d) => ({ relLine: d.line, check: checkDocument(file, { value: d.value }, { index: 0, line: 0 }), doc: { value: d.value } }));
  if (checks.some((c) => c.check.problems.length > 0)) return { problems: checks };
  return { entry: { text: own, docs: checks.map((c) => ({ relLine: c.relLine, objects: c.check.objects.map(toParsed) })) } };
}
