// Incremental parsing of a multi-document registry file: split at document markers, parse and validate only new text.
import { type Document, LineCounter, parseAllDocuments } from 'yaml';
import type { Kind } from './objects.ts';
import { normalize, normalizePolicy } from './objects.ts';
import type { PolicyKind } from './registry.ts';
export { splitDocuments } from './text-diff.ts';
import { type Chunk, planChunks, type Placed as PlacedChunk, type Planned, splitDocuments } from './text-diff.ts';
import { type CheckedObject, checkDocument, type DocumentPosition, documentLine, type Identified, joinDocuments } from './validate.ts';

/** A valid object as cached: validated and normalized once, the same frozen object for as long as its text stays. */
export interface ParsedObject {
  readonly kind: Kind | PolicyKind;
  readonly id: string;
  readonly label: string;
  readonly prefix: string;
  /** client-node's shape for Service/EndpointSlice/Pod, a SkeinPolicy for policies; deeply frozen. */
  readonly value: object;
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
}

function toParsed(o: CheckedObject): ParsedObject {
  const value =
    o.kind === 'Service' || o.kind === 'EndpointSlice' || o.kind === 'Pod' ? normalize(o.kind, o.raw) : normalizePolicy(o.kind, o.raw);
  return { kind: o.kind, id: o.id, label: o.label, prefix: o.prefix, value };
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
  private last: { readonly text: string; readonly chunks: readonly PlacedChunk<CachedChunk>[] } | undefined;

  get size(): number {
    return this.chunks.size;
  }

  /** Parses and validates `text`; objects keep their identity while their chunk's text is unchanged. */
  parse(file: string, text: string): ParseOutcome {
    const next = new Map<string, CachedChunk>();
    const placed: Placed[] = [];
    let index = 0;
    let fresh = 0;
    let cached = 0;
    let valid = true;
    const placements: PlacedChunk<CachedChunk>[] = [];
    const freshValues = new Set<object>();
    let offset = 0;
    const planned: Planned<CachedChunk>[] =
      (this.last && planChunks(this.last.text, this.last.chunks, text)) || splitDocuments(text).map((c: Chunk) => ({ line: c.line, text: c.text }));
    for (const chunk of planned) {
      let entry = chunk.value ?? (this.chunks.get(chunk.text) || next.get(chunk.text));
      if (entry) cached++;
      else if (chunk.value === undefined) {
        fresh++;
        const outcome = parseChunk(file, chunk.text);
        if ('problems' in outcome) {
          // Problems are worded with the document's place: check again with the real positions.
          valid = false;
          for (const c of outcome.problems) {
            const pos = { index: index++, line: chunk.line + c.relLine - 1 };
            placed.push({ pos, ...checkDocument(file, c.doc, pos) });
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
      this.last = { text, chunks: placements };
    } else if (this.chunks.size > 2 * next.size + 1000) this.chunks = next;
    else for (const [key, kept] of next) this.chunks.set(key, kept);
    // Without problems every document came from the cache path, so every object is a ParsedObject.
    return { objects: objects as ParsedObject[], problems, fresh, cached, freshValues };
  }
}

/** Parses and checks a chunk not seen before: its cache entry, or its documents when any has a problem. */
function parseChunk(file: string, text: string): { entry: CachedChunk } | { problems: { relLine: number; doc: Document }[] } {
  // A slice of the file text keeps the whole file alive (V8 sliced strings), and so would every string the
  // parser cuts from it: parse and key a copy, so a cached document holds only its own text.
  const own = Buffer.from(text, 'utf8').toString('utf8');
  const lines = new LineCounter();
  const parsed = parseAllDocuments(own, { lineCounter: lines, prettyErrors: false });
  const checks = (Array.isArray(parsed) ? parsed : []).map((doc) => ({
    relLine: documentLine(doc, lines),
    check: checkDocument(file, doc, { index: 0, line: 0 }),
    doc,
  }));
  if (checks.some((c) => c.check.problems.length > 0)) return { problems: checks };
  return { entry: { text: own, docs: checks.map((c) => ({ relLine: c.relLine, objects: c.check.objects.map(toParsed) })) } };
}
