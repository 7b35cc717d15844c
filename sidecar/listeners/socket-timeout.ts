// A socket idle timeout decided after the event-loop turn's I/O: node's fires before reading bytes already waiting.
import type net from 'node:net';

const kOff = Symbol('skein.idleTimeoutOff');
type WithOff = net.Socket & { [kOff]?: () => void };

/**
 * As `socket.setTimeout(ms, onIdle)`, but decided after the event-loop turn's I/O (setImmediate runs after the poll
 * phase): node's socket timeout is a timer, and timers run before I/O, so once the process was held past it (a GC
 * pause, a starved CPU) its 'timeout' comes with the bytes that came meanwhile still unread. A socket that read or
 * wrote in that turn was not idle: its timeout is armed again. Turn it off with clearIdleTimeout, not setTimeout(0).
 */
export function setIdleTimeout(socket: net.Socket, ms: number, onIdle: () => void): void {
  clearIdleTimeout(socket);
  let off = false;
  const fired = (): void => {
    const read = socket.bytesRead;
    const written = socket.bytesWritten;
    setImmediate(() => {
      if (off || socket.destroyed || socket.timeout !== ms) return;
      if (socket.bytesRead !== read || socket.bytesWritten !== written) socket.setTimeout(ms, fired);
      else onIdle();
    });
  };
  socket.setTimeout(ms, fired);
  (socket as WithOff)[kOff] = () => {
    off = true;
    socket.setTimeout(0, fired);
  };
}

/** Turns off a timeout set with setIdleTimeout (and any other on the socket, as setTimeout(0)). */
export function clearIdleTimeout(socket: net.Socket): void {
  const s = socket as WithOff;
  const off = s[kOff];
  if (off === undefined) return;
  s[kOff] = undefined;
  off();
}
