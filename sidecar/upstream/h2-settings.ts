// New HTTP/2 client sessions open streams only after the peer's first SETTINGS: until then its stream limit is unknown.
import type http2 from 'node:http2';

interface SessionState {
  settled: boolean;
  lastError: NodeJS.ErrnoException | undefined;
  waiters: Array<{ ready: () => void; failed: (err: NodeJS.ErrnoException) => void }>;
}

const states = new WeakMap<http2.ClientHttp2Session, SessionState>();

/**
 * Starts tracking a session just created. HTTP/2 lets a client assume no stream limit until the server's SETTINGS
 * arrive, and a server that has one (grpc-js' `grpc.max_concurrent_streams`, Kestrel's 100, nginx's 128) refuses
 * the streams past it with REFUSED_STREAM: a burst of requests on a new connection would fail. After the SETTINGS,
 * node's HTTP/2 layer (nghttp2) queues streams over the limit itself.
 */
export function trackSettings(session: http2.ClientHttp2Session): void {
  const state: SessionState = { settled: false, lastError: undefined, waiters: [] };
  states.set(session, state);
  session.once('remoteSettings', () => {
    state.settled = true;
    for (const w of state.waiters.splice(0)) w.ready();
  });
  session.on('error', (err: NodeJS.ErrnoException) => (state.lastError = err));
  session.once('close', () => {
    const err = state.lastError ?? closedError();
    for (const w of state.waiters.splice(0)) w.failed(err);
  });
}

/** Whether streams may be opened on `session` now (its peer's SETTINGS are in, or it is not tracked). */
export function isSettled(session: http2.ClientHttp2Session): boolean {
  return states.get(session)?.settled !== false;
}

/** Runs `ready` once the session has the peer's SETTINGS (at once if it has), or `failed` if it closes first. */
export function whenSettled(session: http2.ClientHttp2Session, ready: () => void, failed: (err: NodeJS.ErrnoException) => void): void {
  const state = states.get(session);
  if (state === undefined || state.settled) ready();
  else if (session.closed || session.destroyed) failed(state.lastError ?? closedError());
  else state.waiters.push({ ready, failed });
}

function closedError(): NodeJS.ErrnoException {
  const err = new Error('the HTTP/2 connection closed before the peer sent its settings') as NodeJS.ErrnoException;
  err.code = 'ECONNRESET';
  return err;
}
