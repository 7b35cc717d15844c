// Parses multi-document YAML (js-yaml, YAML 1.2 core schema) into values with the line each document starts on.
import { EVENT_ID, type Event, YAMLException, constructFromEvents, parseEvents } from 'js-yaml';

/** Alias nodes (`*name`) allowed per document. */
const MAX_ALIASES = 100;
/** Nodes a document may expand to once its aliases are followed (a few aliases can otherwise expand exponentially). */
const MAX_EXPANDED_NODES = 1_000_000;
/** Collection nesting allowed. */
const MAX_DEPTH = 100;

export interface YamlDocument {
  /** 1-based line of the document's content within the parsed text (of its `---` when it has no content). */
  readonly line: number;
  readonly value: unknown;
}

/** Where a text stopped being YAML: 1-based line and column within the parsed text, and why. */
export interface YamlSyntaxError {
  readonly line: number;
  readonly column: number;
  readonly reason: string;
}

export type YamlStream = { readonly documents: readonly YamlDocument[] } | { readonly error: YamlSyntaxError };

/** Where an event's node starts in the text, or -1 (document and pop events carry no position). */
function eventStart(e: Event): number {
  switch (e.type) {
    case EVENT_ID.MAPPING:
    case EVENT_ID.SEQUENCE:
      return e.anchorStart >= 0 ? Math.min(e.anchorStart, e.start) : e.tagStart >= 0 ? Math.min(e.tagStart, e.start) : e.start;
    case EVENT_ID.SCALAR:
      return [e.anchorStart, e.tagStart, e.valueStart].filter((n) => n >= 0).reduce((a, b) => Math.min(a, b), Number.MAX_SAFE_INTEGER);
    case EVENT_ID.ALIAS:
      return e.anchorStart - 1;
    default:
      return -1;
  }
}

/** Counts nodes as a consumer walking the value would see them (shared subtrees once per reference), up to `limit`. */
function expandedSize(value: unknown, limit: number): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0 && count <= limit) {
    const v = stack.pop();
    count++;
    if (Array.isArray(v)) for (const item of v) stack.push(item);
    else if (v !== null && typeof v === 'object') for (const item of Object.values(v)) stack.push(item);
  }
  return count;
}

/** The 1-based line of every offset in `offsets` (ascending), counting newlines once through the text. */
function linesOf(text: string, offsets: readonly number[]): number[] {
  const lines: number[] = [];
  let line = 1;
  let at = 0;
  for (const offset of offsets) {
    for (let i = text.indexOf('\n', at); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
    at = Math.max(at, offset);
    lines.push(line);
  }
  return lines;
}

/** The 1-based line of the first content in `text` (skipping blank lines, comments, directives and a bare `---`). */
export function firstContentLine(text: string): number {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const t = (lines[i] ?? '').trim();
    if (t !== '' && !t.startsWith('#') && t !== '---' && !t.startsWith('%')) return i + 1;
  }
  return 1;
}

function syntaxError(text: string, err: unknown): YamlSyntaxError {
  if (err instanceof YAMLException) {
    const mark = err.mark;
    return { line: (mark?.line ?? 0) + 1, column: (mark?.column ?? 0) + 1, reason: err.reason };
  }
  // Not a YAML error (a bug in the parser): still one problem in the file, never a crash.
  return { line: firstContentLine(text), column: 1, reason: err instanceof Error ? err.message : String(err) };
}

/** Parses `text` as a stream of YAML documents; a syntax error anywhere gives that error and no documents. */
export function parseYamlStream(text: string): YamlStream {
  let events: Event[];
  let values: unknown[];
  try {
    events = parseEvents(text, { maxDepth: MAX_DEPTH });
    values = constructFromEvents(events, { source: text, maxAliases: MAX_ALIASES });
  } catch (err) {
    return { error: syntaxError(text, err) };
  }
  // Each document starts at its first node; an empty one at the next content line after the previous document.
  const starts: number[] = [];
  const aliased: boolean[] = [];
  let lastEnd = 0;
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as Event;
    if (e.type === EVENT_ID.ALIAS) aliased[starts.length - 1] = true;
    if (e.type !== EVENT_ID.DOCUMENT) {
      const s = eventStart(e);
      if (s >= 0) lastEnd = s;
      continue;
    }
    const next = events[i + 1];
    const s = next === undefined ? -1 : eventStart(next);
    starts.push(s >= 0 ? s : lastEnd);
  }
  const lines = linesOf(text, starts);
  const documents: YamlDocument[] = [];
  for (let d = 0; d < values.length; d++) {
    const line = lines[d] ?? 1;
    if (aliased[d] && expandedSize(values[d], MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES) {
      return { error: { line, column: 1, reason: `the document's aliases expand to more than ${MAX_EXPANDED_NODES} nodes` } };
    }
    documents.push({ line, value: values[d] });
  }
  return { documents };
}
