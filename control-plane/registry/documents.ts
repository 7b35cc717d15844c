// Incremental parsing of a multi-document registry file: split at document markers, parse and validate only new text.
import { LineCounter, parseAllDocuments } from 'yaml';
import type { Kind } from './objects.ts';
import { normalize, normalizePolicy } from './objects.ts';
import type { PolicyKind } from './registry.ts';
import { type CheckedObject, checkDocument, type DocumentPosition, documentLine, type Identified, joinDocuments } from './validate.ts';

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
    line += countLines(text, start, m.index);
    start = m.index;
  }
  chunks.push({ text: text.slice(start), line });
  return chunks;
}

function countLines(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = text.indexOf('\n', from); i !== -1 && i < to; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** A valid object as cached: validated and normalized once, the same frozen object for as long as its text stays. */
export interface ParsedObject {
  readonly kind: Kind | PolicyKind;
  readonly id: string;
  readonly label: string;
  readonly prefix: string;
  /** client-node's shape for Service/EndpointSlice/Pod, a SkeinPolicy for policies; deeply frozen. */
  readonly value: object;
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
  private chunks = new Map<string, readonly CachedDocument[]>();

  get size(): number {
    return this.chunks.size;
  }

  /** Parses and validates `text`; objects keep their identity while their chunk's text is unchanged. */
  parse(file: string, text: string): ParseOutcome {
    const next = new Map<string, readonly CachedDocument[]>();
    const placed: Placed[] = [];
    let index = 0;
    let fresh = 0;
    let cached = 0;
    let valid = true;
    for (const chunk of splitDocuments(text)) {
      let docs = this.chunks.get(chunk.text) ?? next.get(chunk.text);
      if (docs) cached++;
      else {
        fresh++;
        const lines = new LineCounter();
        const parsed = parseAllDocuments(chunk.text, { lineCounter: lines, prettyErrors: false });
        const checks = (Array.isArray(parsed) ? parsed : []).map((doc) => {
          const relLine = documentLine(doc, lines);
          return { relLine, check: checkDocument(file, doc, { index: 0, line: 0 }), doc };
        });
        if (checks.every((c) => c.check.problems.length === 0)) {
          docs = checks.map((c) => ({ relLine: c.relLine, objects: c.check.objects.map(toParsed) }));
        } else {
          // Problems are worded with the document's place: check again with the real positions.
          valid = false;
          for (const c of checks) {
            const pos = { index: index++, line: chunk.line + c.relLine - 1 };
            placed.push({ pos, ...checkDocument(file, c.doc, pos) });
          }
          continue;
        }
      }
      next.set(chunk.text, docs);
      for (const doc of docs) placed.push({ pos: { index: index++, line: chunk.line + doc.relLine - 1 }, objects: doc.objects, problems: [] });
    }
    const { objects, problems } = joinDocuments(file, placed);
    if (valid && problems.length === 0) this.chunks = next;
    else if (this.chunks.size > 2 * next.size + 1000) this.chunks = next;
    else for (const [key, docs] of next) this.chunks.set(key, docs);
    // Without problems every document came from the cache path, so every object is a ParsedObject.
    return { objects: objects as ParsedObject[], problems, fresh, cached };
  }
}
