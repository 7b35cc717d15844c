// The inbound listener: mTLS or plaintext by the first byte, PROXY header, mode and authorization, then L4 pipe or L7.
import net from 'node:net';
import type { Counter } from 'prom-client';
import { authorize, type Caller, type InboundPolicy } from '../authz/index.ts';
import type { DataPlaneMetrics } from '../telemetry/metrics.ts';
import { parseSpiffeId, peerSpiffeId, type TlsContexts } from '../tls/index.ts';
import { parseProxyHeader, type ParseResult } from '../upstream/index.ts';
import type { ProxyHeader } from '../upstream/index.ts';
import { logger, warnDue } from '../log.ts';
import type { InboundHttpHandler } from './inbound-http.ts';
import { localReplyText } from '../http1/response-head.ts';
import { REASON_HEADER } from './local-reply.ts';
import { AppDownH2 } from './app-down-h2.ts';
import { lingerAfterUpstream } from './linger.ts';
import { clearIdleTimeout, setIdleTimeout } from './socket-timeout.ts';

const log = logger('inbound');

/** Longest header we accept: 16 fixed bytes + 216 address/TLV bytes (the spec's advice for small buffers). */
const MAX_HEADER = 232;
const HEADER_WAIT_MS = 5000;

/** Where an accepted inbound connection is meant to go; an L7 handler (authorization) can replace the pipe. */
export interface InboundHandler {
  handle(client: net.Socket, appPort: number, header: ProxyHeader | undefined, rest: Buffer): void;
  /** Answers a caller that cannot be served `503 upstream_connect_error` with `why`, in its own protocol. */
  refuse(client: net.Socket, sent: Buffer, why: string): void;
  close(): void;
}

/** Pipes bytes between the client and appHost:appPort. */
/** The start of an HTTP/1.x request line (a method token and a space); HTTP/2's preface starts "PRI ". */
const HTTP1_REQUEST = /^(?!PRI )[A-Z]{3,10} /;
const H2_PREFACE_START = 'PRI * HTTP/2.0';
/**
 * How long a caller whose app refused the connection may take to send the bytes that tell its protocol (a peer
 * sidecar sends them right after its handshake); short, as a TCP client of a server-speaks-first protocol sends none.
 */
const PROTOCOL_WAIT_MS = 250;

const noop = (): void => {};

export class L4PipeHandler implements InboundHandler {
  private readonly appHost: string;
  private readonly conns = new Set<net.Socket>();
  private appDownH2: AppDownH2 | undefined;
  private readonly metrics: DataPlaneMetrics | undefined;

  /** `metrics`: where the answers for an app that refused the connection are counted (skein_local_errors_total). */
  constructor(appHost: string, metrics?: DataPlaneMetrics) {
    this.appHost = appHost;
    this.metrics = metrics;
  }

  handle(client: net.Socket, appPort: number, header: ProxyHeader | undefined, rest: Buffer): void {
    const app = net.connect({ host: this.appHost, port: appPort, noDelay: true, allowHalfOpen: true });
    // Counted on the app's side (the caller's may be TLS): what reaches the app came from the caller, and back.
    const counted =
      this.metrics?.tcp.connection(
        'inbound',
        `inbound|${appPort}||`,
        () => app.bytesWritten,
        () => app.bytesRead,
      ) ?? noop;
    const done = (): void => {
      this.conns.delete(client);
      counted();
      client.destroy();
      app.destroy();
    };
    // The app closed or reset after answering (an early 413 to an upload it will not read): its answer, then a FIN,
    // reaches the caller, whose remaining bytes are dropped (see lingerAfterUpstream).
    const afterApp = lingerAfterUpstream(client, app, done);
    this.conns.add(client);
    if (rest.length > 0) app.write(rest);
    // What the caller sent before the app answered the connection, kept to answer it ourselves if the app does not.
    const early: Buffer[] = rest.length > 0 ? [rest] : [];
    const keep = (chunk: Buffer): void => {
      early.push(chunk);
    };
    client.on('data', keep);
    let connected = false;
    app.once('connect', () => {
      connected = true;
      client.off('data', keep);
      early.length = 0;
    });
    app.on('error', (err: NodeJS.ErrnoException) => {
      log.debug('app connection failed', { port: appPort, code: err.code, source: header?.sourceAddress });
      if (connected) {
        afterApp();
        return;
      }
      // No app listening: the caller is told so in an answer it can read (and its sidecar may send a bodiless
      // request elsewhere: the app never saw it), rather than a reset that looks like the peer sidecar failing.
      client.unpipe(app);
      client.off('data', keep);
      app.removeAllListeners('close');
      app.destroy();
      const why = `upstream connect error: ${err.code ?? 'error'} app port ${appPort} (nothing accepts connections on ${this.appHost}:${appPort})`;
      this.refuse(client, Buffer.concat(early), why);
    });
    client.on('error', done);
    client.on('close', done);
    app.on('close', afterApp);
    client.pipe(app);
    app.pipe(client);
    client.resume();
  }

  /**
   * Answers a caller the sidecar cannot serve in its own protocol: 503 upstream_connect_error for HTTP/1.1, the same as an
   * HTTP/2 stream reply for h2c, else a close. On loopback the refusal often comes before the caller's first bytes:
   * this waits for enough of them to know its protocol (at most PROTOCOL_WAIT_MS). `sent`: bytes already read.
   */
  refuse(client: net.Socket, sent: Buffer, why: string): void {
    const reason = 'upstream_connect_error';
    const early: Buffer[] = sent.length > 0 ? [sent] : [];
    let total = sent.length;
    const wait: { timer?: NodeJS.Timeout; decided?: boolean } = {};
    const decide = (): void => {
      if (wait.decided) return;
      wait.decided = true;
      clearTimeout(wait.timer);
      client.off('data', collect);
      const all = Buffer.concat(early);
      const start = all.subarray(0, 16).toString('latin1');
      if (HTTP1_REQUEST.test(start)) {
        this.metrics?.localError(reason);
        client.end(localReplyText(503, REASON_HEADER, reason, why, 'close', true), 'latin1');
      } else if (start.startsWith(H2_PREFACE_START)) {
        this.metrics?.localError(reason);
        (this.appDownH2 ??= new AppDownH2()).handle(client, all, why);
      } else {
        // Opaque TCP has no way to say why: the close is all the caller sees, so it is counted and logged here.
        this.metrics?.localError(reason);
        if (warnDue(`app down ${why}`)) log.warn('closed an inbound TCP connection: the app does not accept connections', { reason: why });
        client.destroy();
      }
    };
    const collect = (chunk: Buffer): void => {
      early.push(chunk);
      total += chunk.length;
      if (total >= H2_PREFACE_START.length) decide();
    };
    if (total >= H2_PREFACE_START.length) {
      decide();
      return;
    }
    client.on('data', collect);
    client.resume();
    // Decided after that event-loop turn's I/O (setImmediate runs after the poll phase): timers run before I/O, so once
    // the loop was held past the wait (a GC pause, a starved CPU), bytes the caller sent meanwhile are read first.
    wait.timer = setTimeout(() => {
      setImmediate(() => {
        if (!client.destroyed) decide();
      });
    }, PROTOCOL_WAIT_MS);
    client.once('close', () => clearTimeout(wait.timer));
  }

  close(): void {
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    this.appDownH2?.close();
  }
}

export interface InboundOptions {
  readonly host: string;
  readonly port: number;
  readonly appPorts: readonly number[];
}

/** What the inbound side enforces: mTLS (absent: plaintext only, `--mtls off`), per-port policy, the L7 path. */
export interface InboundSecurity {
  readonly tls: TlsContexts | undefined;
  /** The policy for an app port (index rebuilt on every MeshConfig). */
  policyFor(port: number): InboundPolicy;
  readonly http: InboundHttpHandler;
  readonly metrics: DataPlaneMetrics;
}

type CounterChild = ReturnType<Counter<string>['labels']>;

/** An inbound connection as it was admitted: its app port, transport, caller, and whether HTTP requests are judged. */
interface Admitted {
  readonly raw: net.Socket;
  readonly port: number;
  readonly plaintext: boolean;
  readonly caller: Caller;
  l7: boolean;
}

/**
 * Parses the PROXY header (v1 or v2) at the start of `buf`; undefined when more bytes are needed, or when the header is bad
 * or too long (then `stream` is closed, with a log line naming `where` it came: ' before TLS', ' inside TLS', '').
 */
function readProxyHeader(buf: Buffer, raw: net.Socket, stream: net.Socket, where: string): Exclude<ParseResult, { kind: 'partial' }> | undefined {
  let result: ParseResult;
  try {
    result = parseProxyHeader(buf);
  } catch (err) {
    log.warn(`inbound connection closed: bad PROXY header${where}`, { remote: raw.remoteAddress, error: (err as Error).message });
    stream.destroy();
    return undefined;
  }
  if (result.kind !== 'partial') return result;
  if (buf.length > MAX_HEADER) stream.destroy();
  return undefined;
}

/**
 * How long after a PROXY header sent before any TLS the next bytes may take before the caller is taken to be a
 * plaintext client of a server-speaks-first protocol (a TLS client sends its ClientHello right behind the header).
 */
const AFTER_OUTER_HEADER_MS = 100;

/**
 * Reads a PROXY header (v1 or v2) at the very start of `socket`, if one is there, and hands over what follows it: at least
 * one byte, or none after a header followed by AFTER_OUTER_HEADER_MS of silence. A bad header closes the connection.
 */
function readOuterProxyHeader(socket: net.Socket, then: (outer: ProxyHeader | undefined, first: Buffer) => void): void {
  let buf: Buffer | undefined;
  let outer: ProxyHeader | undefined;
  let quiet: NodeJS.Timeout | undefined;
  let handed = false;
  const onData = (chunk: Buffer): void => {
    clearTimeout(quiet);
    if (handed) return;
    buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
    if (outer === undefined) {
      const result = readProxyHeader(buf, socket, socket, ' before TLS');
      if (result === undefined) return;
      if (result.kind === 'header') {
        outer = result.header;
        buf = buf.subarray(result.length);
      }
    }
    if (buf.length === 0) {
      // The header alone so far: the next bytes tell TLS from plaintext. Silence is decided after that event-loop
      // turn's I/O (setImmediate runs after the poll phase): timers run before I/O, so once the loop was held past
      // the wait (a GC pause, a starved CPU), a TLS handshake that came meanwhile is read first, not taken for silence.
      quiet = setTimeout(() => {
        setImmediate(() => {
          if (handed || socket.destroyed) return;
          handed = true;
          socket.off('data', onData);
          then(outer, Buffer.alloc(0));
        });
      }, AFTER_OUTER_HEADER_MS);
      return;
    }
    handed = true;
    socket.off('data', onData);
    then(outer, buf);
  };
  socket.on('data', onData);
  socket.once('close', () => clearTimeout(quiet));
}

export class InboundListener {
  private readonly options: InboundOptions;
  private readonly handler: InboundHandler;
  private readonly security: InboundSecurity | undefined;
  private readonly server: net.Server;
  private readonly pending = new Set<net.Socket>();
  /** Connections past the preface, mTLS and policy checks, with what they were judged on (see recheck). */
  private readonly admitted = new Map<net.Socket, Admitted>();
  /** Every accepted connection until it closes: whatever holds one, the end of a drain closes it. */
  private readonly all = new Set<net.Socket>();
  private readonly connCounters = new Map<string, CounterChild>();

  constructor(options: InboundOptions, handler: InboundHandler, security?: InboundSecurity) {
    this.options = options;
    this.handler = handler;
    this.security = security;
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
    this.all.add(socket);
    socket.once('close', () => this.all.delete(socket));
    this.pending.add(socket);
    socket.on('error', () => socket.destroy());
    // Decided after the turn's I/O (setIdleTimeout): bytes that came while the process was held past it are read first.
    setIdleTimeout(socket, HEADER_WAIT_MS, () => {
      log.warn('inbound connection closed: no PROXY header or data within 5 s', { remote: socket.remoteAddress });
      socket.destroy();
    });
    const tlsContexts = this.security?.tls;
    if (tlsContexts === undefined) {
      this.readPreface(socket, socket, undefined);
      return;
    }
    // A PROXY v2 header may come first, before TLS (haproxy's send-proxy-v2, Envoy's upstream proxy_protocol
    // transport socket); our own sidecars send it inside TLS. Then peek at the first byte: 0x16 starts a TLS
    // handshake (a peer sidecar); anything else is plaintext.
    readOuterProxyHeader(socket, (outer, first) => {
      socket.pause();
      if (first.length === 0) {
        // A PROXY header and then silence: a plaintext caller of a protocol where the server speaks first.
        clearIdleTimeout(socket);
        this.pending.delete(socket);
        this.route(socket, socket, outer, first, undefined);
        return;
      }
      if (first[0] !== 0x16) {
        this.readPreface(socket, socket, undefined, first, outer);
        return;
      }
      const metrics = this.security?.metrics;
      tlsContexts.acceptInbound(socket, first).then(
        (secure) => {
          metrics?.tlsHandshakes.labels('inbound', secure.isSessionReused() ? 'resumed' : 'ok').inc();
          secure.on('error', () => secure.destroy());
          this.readPreface(socket, secure, peerSpiffeId(secure), undefined, outer);
        },
        (err: NodeJS.ErrnoException) => {
          this.pending.delete(socket);
          metrics?.tlsHandshakes.labels('inbound', 'failed').inc();
          const rejected = err.code === 'SKEIN_TLS_CLIENT_CERT_REJECTED';
          metrics?.inboundRefused.labels(rejected ? 'client_certificate' : 'tls_handshake').inc();
          log.warn(rejected ? 'inbound mTLS refused: the client certificate is not valid for this mesh' : 'inbound mTLS handshake failed', {
            remote: socket.remoteAddress,
            code: err.code,
            error: err.message,
          });
          socket.destroy();
        },
      );
    });
  }

  /**
   * Reads the PROXY header (v1 or v2) (if any) from `stream` (the socket, or the TLS stream over it), then routes.
   * `peer` is the verified SPIFFE ID for mTLS; `first` holds bytes already read from a plaintext socket.
   */
  private readPreface(raw: net.Socket, stream: net.Socket, peer: string | undefined, first?: Buffer, outer?: ProxyHeader): void {
    let buf: Buffer | undefined;
    const onData = (chunk: Buffer): void => {
      buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
      const result = readProxyHeader(buf, raw, stream, stream === raw ? '' : ' inside TLS');
      if (result === undefined) return;
      stream.off('data', onData);
      stream.pause();
      clearIdleTimeout(raw);
      this.pending.delete(raw);
      // A header inside the TLS stream (integrity-protected) wins over one sent before the handshake.
      const header = result.kind === 'header' ? result.header : outer;
      const rest = result.kind === 'header' ? buf.subarray(result.length) : buf;
      this.route(raw, stream, header, rest, peer);
    };
    stream.on('data', onData);
    // A caller that goes away before its PROXY header (a client aborting right after the handshake) releases the
    // connection now, not at the 5 s header wait: with allowHalfOpen its end alone would close nothing.
    const gone = (): void => {
      if (!this.pending.has(raw)) return;
      this.pending.delete(raw);
      stream.destroy();
      raw.destroy();
    };
    stream.once('end', gone);
    stream.once('close', gone);
    if (first !== undefined) onData(first);
    if (!stream.destroyed && this.pending.has(raw)) stream.resume();
  }

  private route(raw: net.Socket, socket: net.Socket, header: ProxyHeader | undefined, rest: Buffer, peer: string | undefined): void {
    const appPorts = this.options.appPorts;
    const port = header?.destinationPort ?? appPorts[0];
    const sec = this.security;
    if (port === undefined || !appPorts.includes(port)) {
      log.warn(`inbound connection closed: destination port ${port} is not one of this pod's app ports (${appPorts.join(', ')})`, {
        remote: raw.remoteAddress,
        source: header?.sourceAddress,
      });
      sec?.metrics.inboundRefused.labels('bad_port').inc();
      const why = `destination port ${port} is not one of the app ports of the pod behind this sidecar (${appPorts.join(', ')}): check the Service's targetPort and the sidecar's --app-port`;
      this.handler.refuse(socket, rest, why);
      return;
    }
    if (sec === undefined) {
      this.handler.handle(socket, port, header, rest);
      return;
    }
    const policy = sec.policyFor(port);
    const transport = socket === raw ? 'plaintext' : 'mtls';
    if (transport === 'plaintext' && sec.tls !== undefined && policy.mode === 'STRICT') {
      log.warn('inbound plaintext connection refused: the destination requires mTLS (STRICT)', {
        remote: raw.remoteAddress,
        source: header?.sourceAddress,
        port,
        services: policy.services,
      });
      sec.metrics.inboundRefused.labels('plaintext_strict').inc();
      socket.destroy();
      return;
    }
    this.countConnection(transport, peer ?? '');
    const caller: Caller = { principal: peer, namespace: peer === undefined ? undefined : parseSpiffeId(peer)?.namespace };
    const admitted: Admitted = { raw, port, plaintext: transport === 'plaintext', caller, l7: false };
    this.admitted.set(socket, admitted);
    socket.once('close', () => this.admitted.delete(socket));
    if (policy.authz.length === 0) {
      this.handler.handle(socket, port, header, rest);
      return;
    }
    if (policy.l7) {
      admitted.l7 = true;
      sec.http.handle(socket, port, header, rest, caller);
      return;
    }
    const d = authorize(policy, caller, undefined);
    if (!d.allowed) {
      sec.metrics.authzDenied.labels(d.service).inc();
      log.warn('inbound connection denied by authorization policy', {
        peer: peer ?? '(plaintext)',
        service: d.service,
        reason: d.reason,
        remote: raw.remoteAddress,
      });
      socket.destroy();
      return;
    }
    this.handler.handle(socket, port, header, rest);
  }

  /**
   * After a config change: open connections the new policy would refuse are closed. A plaintext connection to a port
   * that became STRICT, and a connection judged at L4 that its Service's policy now denies (HTTP connections are
   * judged again on their next request anyway).
   */
  recheck(): void {
    const sec = this.security;
    if (sec === undefined) return;
    for (const [socket, a] of this.admitted) {
      const policy = sec.policyFor(a.port);
      let why: string | undefined;
      if (a.plaintext && sec.tls !== undefined && policy.mode === 'STRICT') {
        why = 'the destination now requires mTLS (STRICT)';
        sec.metrics.inboundRefused.labels('plaintext_strict').inc();
      } else if (!a.l7 && policy.authz.length > 0) {
        const d = authorize(policy, a.caller, undefined);
        if (!d.allowed) {
          why = `denied by authorization policy (${d.service}: ${d.reason})`;
          sec.metrics.authzDenied.labels(d.service).inc();
        }
      }
      if (why === undefined) continue;
      log.warn('open inbound connection closed after a config change', { peer: a.caller.principal ?? '(plaintext)', port: a.port, why, remote: a.raw.remoteAddress });
      this.admitted.delete(socket);
      socket.destroy();
    }
  }

  private countConnection(transport: string, peer: string): void {
    const key = `${transport}|${peer}`;
    let c = this.connCounters.get(key);
    if (c === undefined) {
      c = (this.security as InboundSecurity).metrics.inboundConnections.labels(transport, peer);
      this.connCounters.set(key, c);
    }
    c.inc();
  }

  async close(drainMs: number): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.pending) s.destroy();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((r) => (timer = setTimeout(r, drainMs)))]);
    clearTimeout(timer);
    this.handler.close();
    this.security?.http.close();
    for (const s of this.all) s.destroy();
    await closed;
  }
}
