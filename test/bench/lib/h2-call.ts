// A bare gRPC bidi stream on node:http2 for the benchmark's simulated proxies: one session, one stream, framed messages.
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';

/**
 * What the simulated proxies need of a gRPC call (write, cancel; 'data', 'error', 'end'), without grpc-js's
 * per-message machinery. The benchmark runs 1000 proxies on one core: with grpc-js's client, receiving and ACKing
 * a change took the load generator longer than the control plane took to send it, so the "convergence" it measured
 * was mostly the load generator's own queue. This sends and reads the same bytes (the gRPC length-prefixed
 * framing over HTTP/2, RFC 7540 and the gRPC HTTP/2 protocol) and decodes them with the same protobuf codecs.
 */
export class H2Call extends EventEmitter {
  private readonly session: http2.ClientHttp2Session;
  private readonly stream: http2.ClientHttp2Stream;
  private readonly serialize: (value: object) => Buffer;
  private readonly deserialize: (bytes: Buffer) => object;
  /** Bytes not yet delivered (a message may span DATA frames, a frame may hold several messages). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes the first buffered message needs, prefix included; 0 while its prefix is incomplete. */
  private needed = 0;
  private ended = false;

  constructor(address: string, path: string, serialize: (value: object) => Buffer, deserialize: (bytes: Buffer) => object) {
    super();
    this.serialize = serialize;
    this.deserialize = deserialize;
    // No Nagle: small ACKs must not wait for the server's delayed ACK (grpc-js sets the same).
    const url = new URL(`http://${address}`);
    // HTTP/2's default 64 KiB flow-control windows, as grpc-js clients (our sidecar, proxyless gRPC) use. No
    // session-memory cap (grpc-js lifts it too).
    this.session = http2.connect(url, {
      createConnection: () => net.connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port), noDelay: true }),
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    });
    this.stream = this.session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    this.stream.on('data', (chunk: Buffer) => this.onData(chunk));
    this.stream.on('response', (headers) => this.checkStatus(headers));
    this.stream.on('trailers', (trailers) => this.checkStatus(trailers));
    this.stream.on('error', (err) => this.fail(14, err.message));
    this.stream.on('close', () => {
      if (!this.ended) this.fail(14, `stream closed (HTTP/2 code ${this.stream.rstCode ?? 0})`);
    });
  }

  write(message: object): void {
    if (this.ended) return;
    const body = this.serialize(message);
    const frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = 0;
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    this.stream.write(frame);
  }

  cancel(): void {
    this.ended = true;
    this.stream.close(http2.constants.NGHTTP2_CANCEL);
    this.session.close();
  }

  private onData(chunk: Buffer): void {
    // A large message arrives in many DATA frames: collect them and join once it is complete (joining per frame
    // would copy a 2 MB response ~100 times).
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.needed === 0 && this.buffered >= 5) this.needed = 5 + this.peekLength();
    if (this.needed === 0 || this.buffered < this.needed) return;
    let buf = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    this.needed = 0;
    while (buf.length >= 5) {
      const length = buf.readUInt32BE(1);
      if (buf.length < 5 + length) break;
      if (buf[0] !== 0) {
        this.fail(13, 'compressed message received; the simulated proxy asked for none');
        return;
      }
      const message = buf.subarray(5, 5 + length);
      buf = buf.subarray(5 + length);
      let decoded: object;
      try {
        decoded = this.deserialize(message);
      } catch (err) {
        this.fail(13, `undecodable message: ${(err as Error).message}`);
        return;
      }
      this.emit('data', decoded);
    }
    if (buf.length > 0) {
      this.chunks.push(buf);
      this.buffered = buf.length;
      if (buf.length >= 5) this.needed = 5 + buf.readUInt32BE(1);
    }
  }

  /** The length prefix of the message at the start of the collected chunks (at least 5 bytes are buffered). */
  private peekLength(): number {
    const head = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, 5);
    return head.readUInt32BE(1);
  }

  private checkStatus(headers: http2.IncomingHttpHeaders): void {
    const status = headers['grpc-status'];
    if (status === undefined) return;
    const code = Number(status);
    if (code === 0) {
      this.ended = true;
      this.emit('end');
    } else this.fail(code, decodeURIComponent(String(headers['grpc-message'] ?? '')));
  }

  private fail(code: number, details: string): void {
    if (this.ended) return;
    this.ended = true;
    this.emit('error', Object.assign(new Error(details), { code, details }));
    this.session.destroy();
  }
}
