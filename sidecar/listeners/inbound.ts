// The inbound listener: reads a PROXY v2 header (if any), checks the app port, hands the connection to a handler (L4 pipe now).
import net from 'node:net';
import { parseProxyHeader } from '../upstream/index.ts';
import type { ProxyHeader } from '../upstream/index.ts';
import { logger } from '../log.ts';

const log = logger('inbound');

/** Longest header we accept: 16 fixed bytes + 216 address/TLV bytes (the spec's advice for small buffers). */
const MAX_HEADER = 232;
const HEADER_WAIT_MS = 5000;

/** Where an accepted inbound connection is meant to go; an L7 handler (authorization) can replace the pipe. */
export interface InboundHandler {
  handle(client: net.Socket, appPort: number, header: ProxyHeader | undefined, rest: Buffer): void;
  close(): void;
}

/** Pipes bytes between the client and appHost:appPort. */
export class L4PipeHandler implements InboundHandler {
  private readonly appHost: string;
  private readonly conns = new Set<net.Socket>();

  constructor(appHost: string) {
    this.appHost = appHost;
  }

  handle(client: net.Socket, appPort: number, header: ProxyHeader | undefined, rest: Buffer): void {
    const app = net.connect({ host: this.appHost, port: appPort, noDelay: true, allowHalfOpen: true });
    this.conns.add(client);
    if (rest.length > 0) app.write(rest);
    const done = (): void => {
      this.conns.delete(client);
      client.destroy();
      app.destroy();
    };
    app.on('error', (err: NodeJS.ErrnoException) => {
      log.debug('app connection failed', { port: appPort, code: err.code, source: header?.sourceAddress });
      done();
    });
    client.on('error', done);
    client.on('close', done);
    app.on('close', done);
    client.pipe(app);
    app.pipe(client);
    client.resume();
  }

  close(): void {
    for (const c of this.conns) c.destroy();
    this.conns.clear();
  }
}

export interface InboundOptions {
  readonly host: string;
  readonly port: number;
  readonly appPorts: readonly number[];
}

export class InboundListener {
  private readonly options: InboundOptions;
  private readonly handler: InboundHandler;
  private readonly server: net.Server;
  private readonly pending = new Set<net.Socket>();

  constructor(options: InboundOptions, handler: InboundHandler) {
    this.options = options;
    this.handler = handler;
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => this.accept(s));
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo | null)?.port ?? this.options.port;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  private accept(socket: net.Socket): void {
    this.pending.add(socket);
    socket.on('error', () => socket.destroy());
    socket.setTimeout(HEADER_WAIT_MS, () => {
      log.warn('inbound connection closed: no PROXY header or data within 5 s', { remote: socket.remoteAddress });
      socket.destroy();
    });
    let buf: Buffer | undefined;
    const onData = (chunk: Buffer): void => {
      buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
      let result;
      try {
        result = parseProxyHeader(buf);
      } catch (err) {
        log.warn('inbound connection closed: bad PROXY v2 header', { remote: socket.remoteAddress, error: (err as Error).message });
        socket.destroy();
        return;
      }
      if (result.kind === 'partial') {
        if (buf.length > MAX_HEADER) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      socket.setTimeout(0);
      this.pending.delete(socket);
      const header = result.kind === 'header' ? result.header : undefined;
      const rest = result.kind === 'header' ? buf.subarray(result.length) : buf;
      this.route(socket, header, rest);
    };
    socket.on('data', onData);
  }

  private route(socket: net.Socket, header: ProxyHeader | undefined, rest: Buffer): void {
    const appPorts = this.options.appPorts;
    const port = header?.destinationPort ?? appPorts[0];
    if (port === undefined || !appPorts.includes(port)) {
      log.warn(`inbound connection closed: destination port ${port} is not one of this pod's app ports (${appPorts.join(', ')})`, {
        remote: socket.remoteAddress,
        source: header?.sourceAddress,
      });
      socket.destroy();
      return;
    }
    this.handler.handle(socket, port, header, rest);
  }

  async close(drainMs: number): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.pending) s.destroy();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((r) => (timer = setTimeout(r, drainMs)))]);
    clearTimeout(timer);
    this.handler.close();
    await closed;
  }
}
