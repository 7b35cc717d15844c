// parseYamlStream: documents with the lines they start on, YAML 1.2 core values, and errors with line and column.
import { describe, expect, it } from 'vitest';
import { firstContentLine, parseYamlStream } from '../../../control-plane/registry/yaml-stream.ts';

function documents(text: string): { line: number; value: unknown }[] {
  const out = parseYamlStream(text);
  if ('error' in out) throw new Error(`unexpected error: ${JSON.stringify(out.error)}`);
  return out.documents.map((d) => ({ line: d.line, value: d.value }));
}

function error(text: string): { line: number; column: number; reason: string } {
  const out = parseYamlStream(text);
  if (!('error' in out)) throw new Error('expected an error');
  return out.error;
}

describe('parseYamlStream', () => {
  it('gives each document the line its content starts on, across markers, comments and `...` ends', () => {
    const text = ['a: 1', '---', '# a comment', '', 'b: 2', '...', 'c: [3]', '--- d', '---', '&x e: 5'].join('\n');
    expect(documents(text)).toEqual([
      { line: 1, value: { a: 1 } },
      { line: 5, value: { b: 2 } },
      { line: 7, value: { c: [3] } },
      { line: 8, value: 'd' },
      { line: 10, value: { e: 5 } },
    ]);
  });

  it('reads YAML 1.2 core scalars as Kubernetes does (no YAML 1.1 booleans, octals or timestamps)', () => {
    expect(documents('a: yes\nb: 017\nc: 0o17\nd: 2001-12-14\ne: ~\nf: "80"\ng: true\n')[0]?.value).toEqual({
      a: 'yes',
      b: 17,
      c: 15,
      d: '2001-12-14',
      e: null,
      f: '80',
      g: true,
    });
  });

  it('names the line and column of a syntax error, a duplicate key, and an unknown alias', () => {
    expect(error('a: 1\nb: [1, 2\nc: 3\n')).toMatchObject({ line: 3 });
    expect(error('metadata:\n  name: a\n  name: b\n')).toEqual({ line: 3, column: 3, reason: 'duplicated mapping key' });
    expect(error('a: *nowhere\n').line).toBe(1);
  });

  it('refuses a document whose aliases expand exponentially (a "billion laughs"), naming its line', () => {
    const levels = ['x: ok', 'a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]'];
    for (const [prev, cur] of [['a', 'b'], ['b', 'c'], ['c', 'd'], ['d', 'e'], ['e', 'f'], ['f', 'g']]) {
      levels.push(`${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(', ')}]`);
    }
    const err = error(`---\nfine: 1\n---\n${levels.join('\n')}\n`);
    expect(err.line).toBe(4);
    expect(err.reason).toMatch(/aliases expand to more than/);
    // A few ordinary aliases are fine and resolve to the same values.
    expect(documents('base: &b { port: 80 }\nother: *b\n')[0]?.value).toEqual({ base: { port: 80 }, other: { port: 80 } });
  });

  it('treats empty text and bare markers as no or empty documents, not errors', () => {
    expect(documents('')).toEqual([]);
    expect(documents('# only a comment\n')).toEqual([]);
    expect(documents('---\n').map((d) => d.value)).toEqual([null]);
  });
});

describe('firstContentLine', () => {
  it('skips blank lines, comments, directives and a bare marker', () => {
    expect(firstContentLine('\n# c\n%YAML 1.2\n---\n\nkind: Service\n')).toBe(6);
    expect(firstContentLine('')).toBe(1);
  });
});
