// Normalises a request target before authorization (and for the app), so `//admin`, `/./admin`, `/x/../admin`, `/%61dmin`, `/admin#x` and `http://h/admin` are all `/admin`.

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** Decodes percent-escapes of unreserved characters (RFC 3986 §6.2.2.2) and upper-cases the others' hex digits. */
function decodeUnreserved(path: string): string {
  if (!path.includes('%')) return path;
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`;
  });
}

/** RFC 3986 §5.2.4 remove_dot_segments, on a path that starts with `/`. */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/');
  // segments[0] is '' (the leading slash); the last one decides whether the result ends with a slash.
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string;
    const last = i === segments.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..') out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return `/${out.join('/')}`;
}

/**
 * The request target as the policy sees it and the app receives it (Istio's BASE normalisation plus merged
 * slashes): absolute form reduced to its path, unreserved characters decoded, `//` merged, dot segments resolved.
 * The query string is kept as sent, a fragment dropped. `*` (OPTIONS *) stays `*`.
 */
export function normalizeTarget(target: string): string {
  if (target === '*') return target;
  let t = target;
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(t);
  if (scheme !== null) t = t.slice(scheme[0].length);
  // A fragment is not part of a request target (the outbound listener answers 400 to one); from a native peer it is
  // cut here, as the app's URL parser would, so the policy judges the path the app serves (`/admin#x` is `/admin`).
  const hash = t.indexOf('#');
  if (hash !== -1) t = t.slice(0, hash);
  const q = t.indexOf('?');
  const query = q === -1 ? '' : t.slice(q);
  let path = q === -1 ? t : t.slice(0, q);
  if (!path.startsWith('/')) path = `/${path}`;
  path = decodeUnreserved(path).replace(/\/{2,}/g, '/');
  return removeDotSegments(path) + query;
}
