// Request targets normalised before authorization: the forms that would slip past a path rule.
import { describe, expect, it } from 'vitest';
import { normalizeTarget } from '../../../sidecar/authz/path.ts';

describe('normalizeTarget', () => {
  it('reduces every spelling of /admin to /admin', () => {
    for (const t of ['/admin', '//admin', '/./admin', '/x/../admin', '/%61dmin', '/adm%69n', 'http://web.shop/admin', '/a/b/../../admin', '/../admin', '///admin/.', '/admin#frag', '/admin#/public', 'http://h/admin#x'])
      expect(normalizeTarget(t).replace(/\/$/, '')).toBe('/admin');
  });

  it('keeps the query, reserved escapes (upper-cased) and a trailing slash; resolves dot segments like RFC 3986', () => {
    expect(normalizeTarget('/a/b?x=/../y')).toBe('/a/b?x=/../y');
    expect(normalizeTarget('/a%2fb')).toBe('/a%2Fb');
    expect(normalizeTarget('/a/')).toBe('/a/');
    expect(normalizeTarget('/a/b/..')).toBe('/a/');
    expect(normalizeTarget('/a/./b/.')).toBe('/a/b/');
    expect(normalizeTarget('*')).toBe('*');
    expect(normalizeTarget('http://h')).toBe('/');
    expect(normalizeTarget('/admin/../x')).toBe('/x');
    // A fragment goes (as the app's URL parser drops it), with whatever it held: a query after it, dot segments.
    expect(normalizeTarget('/a?x=1#frag')).toBe('/a?x=1');
    expect(normalizeTarget('/a#frag?x=1')).toBe('/a');
    expect(normalizeTarget('/public/..#/admin')).toBe('/');
  });
});
