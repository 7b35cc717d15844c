// Incremental registry parsing: document splitting, the per-document cache, identity sharing and problem positions.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DocumentCache, splitDocuments } from '../../../control-plane/registry/documents.ts';
import { RegistryInvalidError } from '../../../control-plane/registry/errors.ts';
import { parseRegistryText } from '../../../control-plane/registry/file.ts';
import { planChunks } from '../../../control-plane/registry/text-diff.ts';

const svc = (name: string, port = 80): string =>
  `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n  ports:\n    - port: ${port}\n`;
const docs = (...d: string[]): string => d.join('---\n');

function problems(cache: DocumentCache, text: string): string[] {
  return cache.parse('r.yaml', text).problems;
}

describe('splitDocuments', () => {
  it('splits at --- lines only, keeping each chunk first line', () => {
    const text = '# head\napiVersion: v1\n---\na: "--- not a marker"\nb: |\n  ---\n--- # comment\nc: 1\n';
    expect(splitDocuments(text)).toEqual([
      { text: '# head\napiVersion: v1\n', line: 1 },
      { text: '---\na: "--- not a marker"\nb: |\n  ---\n', line: 3 },
      { text: '--- # comment\nc: 1\n', line: 7 },
    ]);
  });

  it('keeps a file with directives whole (a directive belongs to the next ---)', () => {
    const text = '%YAML 1.2\n---\na: 1\n...\n%YAML 1.2\n---\nb: 2\n';
    expect(splitDocuments(text)).toEqual([{ text, line: 1 }]);
  });
});

describe('DocumentCache', () => {
  it('parses only changed documents and returns the same frozen objects for unchanged ones', () => {
    const cache = new DocumentCache();
    const first = cache.parse('r.yaml', docs(svc('a'), svc('b'), svc('c')));
    expect(first.problems).toEqual([]);
    expect(first.fresh).toBe(3);
    const second = cache.parse('r.yaml', docs(svc('a'), svc('b', 81), svc('c')));
    expect(second.fresh).toBe(1);
    expect(second.cached).toBe(2);
    expect(second.objects[0]?.value).toBe(first.objects[0]?.value);
    expect(second.objects[1]?.value).not.toBe(first.objects[1]?.value);
    expect(second.objects[2]?.value).toBe(first.objects[2]?.value);
    expect(Object.isFrozen(second.objects[1]?.value)).toBe(true);
    expect(cache.size).toBe(3);
  });

  it('gives the same result as a fresh parse, with a document moved, added and removed', () => {
    const cache = new DocumentCache();
    cache.parse('r.yaml', docs(svc('a'), svc('b'), svc('c')));
    const text = docs(svc('c'), svc('d'), svc('a'));
    const warm = parseRegistryText('r.yaml', text, cache);
    const cold = parseRegistryText('r.yaml', text);
    expect(warm).toEqual(cold);
    expect(warm.services.map((s) => s.metadata?.name)).toEqual(['c', 'd', 'a']);
  });

  it('words problems of a changed document with its place in the whole file', () => {
    const cache = new DocumentCache();
    cache.parse('r.yaml', docs(svc('a'), svc('b'), svc('c')));
    // Each svc() is 7 lines plus the --- line: the third document starts at line 17.
    expect(problems(cache, docs(svc('a'), svc('b'), svc('c', 99999)))).toEqual([
      'r.yaml: document 3 (Service default/c, line 17): spec.ports[0].port: 99999 is not a port number (1-65535)',
    ]);
  });

  it('finds a duplicate between a cached and a new document, naming both places', () => {
    const cache = new DocumentCache();
    cache.parse('r.yaml', docs(svc('a'), svc('b')));
    expect(problems(cache, docs(svc('a'), svc('b'), svc('a', 81)))).toEqual([
      'r.yaml: document 3 (Service default/a, line 17): metadata.name: duplicate Service default/a (first defined in document 1 (line 1))',
    ]);
  });

  it('counts documents after an explicit end marker and leading comments like a whole-file parse', () => {
    const text = `# registry\n${svc('a')}...\n${svc('b')}---\n${svc('c', 0)}`;
    const cache = new DocumentCache();
    expect(problems(cache, text)).toEqual([
      'r.yaml: document 3 (Service default/c, line 18): spec.ports[0].port: 0 is not a port number (1-65535)',
    ]);
  });

  it('rejects a broken edit while keeping the good documents cached, then recovers', () => {
    const cache = new DocumentCache();
    const good = cache.parse('r.yaml', docs(svc('a'), svc('b')));
    expect(() => parseRegistryText('r.yaml', docs(svc('a'), 'kind: [\n'), cache)).toThrow(RegistryInvalidError);
    const again = cache.parse('r.yaml', docs(svc('a'), svc('b')));
    expect(again.fresh).toBe(0);
    expect(again.objects.map((o) => o.value)).toEqual(good.objects.map((o) => o.value));
    expect(again.objects[1]?.value).toBe(good.objects[1]?.value);
  });
});

describe('unknown fields', () => {
  it('are accepted but named, with the object and field path, as kubectl warns of them', () => {
    const cache = new DocumentCache();
    const typo = `apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selectr: { app: web }\n  ports:\n    - port: 80\n      targetport: 8080\n`;
    const out = cache.parse('r.yaml', docs(svc('a'), typo));
    expect(out.problems).toEqual([]);
    expect(out.objects[0]?.unknownFields).toBeUndefined();
    expect(out.objects[1]?.label).toBe('Service default/web');
    expect(out.objects[1]?.unknownFields).toEqual(['spec.selectr', 'spec.ports[0].targetport']);
  });

  it('leave the fields Kubernetes has alone, in every kind a registry holds', () => {
    const cache = new DocumentCache();
    const text = readFileSync(new URL('../../../examples/registry.yaml', import.meta.url), 'utf8');
    const out = cache.parse('examples/registry.yaml', text);
    expect(out.problems).toEqual([]);
    expect(out.objects.flatMap((o) => o.unknownFields ?? [])).toEqual([]);
  });
});

describe('DocumentCache after edits anywhere in the file', () => {
  it('matches a fresh parse (objects, problems, lines) after random edits, and reuses untouched documents', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let services = Array.from({ length: 30 }, (_, i) => svc(`s${i}`, 80 + i));
    const cache = new DocumentCache();
    cache.parse('r.yaml', docs(...services));
    for (let round = 0; round < 60; round++) {
      const i = rand(services.length);
      const op = rand(6);
      const next = [...services];
      if (op === 0) next[i] = svc(`s${i}`, 1000 + round); // change a port
      else if (op === 1) next.splice(i, 0, svc(`n${round}`)); // insert
      else if (op === 2 && next.length > 10) next.splice(i, 1); // delete
      else if (op === 3) next[i] = `# comment ${round}\n${next[i]}`; // a comment line shifts every later line
      else if (op === 4) next[i] = svc(`s${i}`, 99999); // invalid: rejected, last good kept
      else next[i] = svc(`s${rand(services.length)}`); // maybe a duplicate
      const text = docs(...next);
      const warm = cache.parse('r.yaml', text);
      const cold = new DocumentCache().parse('r.yaml', text);
      expect(warm.problems).toEqual(cold.problems);
      if (cold.problems.length === 0) {
        expect(warm.objects.map((o) => o.value)).toEqual(cold.objects.map((o) => o.value));
        expect(warm.fresh).toBeLessThanOrEqual(2);
        services = next;
      }
    }
  });
});

describe('DocumentCache after several scattered edits at once', () => {
  it('matches a fresh parse, parses only the edited documents and reports only their objects as changed', () => {
    let seed = 11;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return Math.floor(seed / 65536) % n; // the high bits: an LCG's low bits repeat with a short period
    };
    let services = Array.from({ length: 40 }, (_, i) => svc(`s${i}`, 80 + i));
    for (const asBytes of [false, true]) {
      const cache = new DocumentCache();
      const source = (text: string) => (asBytes ? Buffer.from(text) : text);
      cache.parse('r.yaml', source(docs(...services)));
      for (let round = 0; round < 80; round++) {
        const next = [...services];
        const ops = 1 + rand(4);
        for (let e = 0; e < ops; e++) {
          const i = rand(next.length);
          const op = rand(6);
          if (op === 0 || op === 1) {
            next[i] = svc(`s${round}x${e}`, 2000 + round);
          } else if (op === 2) {
            next.splice(i, 0, svc(`n${round}x${e}`));
          } else if (op === 3 && next.length > 12) next.splice(i, 1);
          else if (op === 4) next[i] = `# c${round}\n# d\n${next[i]}`;
          else next[i] = svc(`t${round}x${e}`, 99999); // invalid: the whole edit is rejected, the last good kept
        }
        const text = docs(...next);
        const warm = cache.parse('r.yaml', source(text));
        const cold = new DocumentCache().parse('r.yaml', text);
        expect(warm.problems).toEqual(cold.problems);
        if (cold.problems.length > 0) continue;
        expect(warm.objects.map((o) => o.value)).toEqual(cold.objects.map((o) => o.value));
        // Each edit reparses at most its own chunk and, at the top of the file, the chunk that lost or gained the
        // first document's place (the first chunk has no `---`).
        expect(warm.fresh).toBeLessThanOrEqual(2 * ops);
        if (warm.delta) expect(warm.delta.added.length).toBeLessThanOrEqual(2 * ops);
        services = next;
      }
    }
  });
});

describe('planChunks', () => {
  it('carries over the chunks before and after an edit and splits only the edited region, with shifted lines', () => {
    const before = docs(...Array.from({ length: 10 }, (_, i) => svc(`s${i}`)));
    const chunks = splitDocuments(before);
    let start = 0;
    const placed = chunks.map((c, k) => {
      const p = { start, line: c.line, value: k };
      start += c.text.length;
      return p;
    });
    const after = docs(...Array.from({ length: 10 }, (_, i) => (i === 4 ? `# note\n${svc('s4', 81)}` : svc(`s${i}`))));
    const plan = planChunks(before, placed, after);
    expect(plan?.map((c) => c.value)).toEqual([0, 1, 2, 3, undefined, 5, 6, 7, 8, 9]);
    expect(plan?.map((c) => c.line)).toEqual(splitDocuments(after).map((c) => c.line));
    expect(plan?.[4]).toEqual(splitDocuments(after)[4]);
  });
});
