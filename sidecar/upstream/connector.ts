// The mTLS connector: to peer sidecars, TLS with a SPIFFE check and the PROXY v2 header (inside, or before it); others plain TCP.
import net from 'node:net';
import type tls from 'node:tls';
import type { Counter } from 'prom-client';
import type { TlsContexts } from '../tls/index.ts';
import { logger, warnDue } from '../log.ts';
import { type Connector, plainConnector } from './pool.ts';

const log = logger('tls');

/**
 * A Connector that originates mutual TLS to endpoints with an inbound port (they run a Skein sidecar): the peer
 * must present a SPIFFE ID the cluster lists (`target.peers`; an empty list accepts any ID of our trust domain).
 * The PROXY v2 header is the first data inside the TLS stream. Endpoints without a sidecar get plain TCP.
 * Handshakes are counted in `handshakes{direction="outbound", result}`; sessions are resumed per peer by TlsContexts.
 */
export function mtlsConnector(contexts: TlsContexts, handshakes: Counter<'direction' | 'result'>): Connector {
  const ok = handshakes.labels('outbound', 'ok');
  const resumed = handshakes.labels('outbound', 'resumed');
  const failed = handshakes.labels('outbound', 'failed');
  const mismatch = handshakes.labels('outbound', 'identity_mismatch');
  return (t, header, allowHalfOpen, onread) => {
    // TLS sockets read through the stream ('data' events): onread is for plain TCP only.
    if (t.inboundPort === undefined) return plainConnector(t, header, allowHalfOpen, onread);
    const ids = t.peers?.ids ?? [];
    // A peer that reads the header before TLS (a native proxy's accept-proxy): it goes first on the TCP connection,
    // queued before TLS starts, so it leaves ahead of the ClientHello.
    const outer = header !== undefined && t.proxyProtocol === 'outside-tls' ? net.connect({ host: t.address, port: t.inboundPort, noDelay: true, allowHalfOpen }) : undefined;
    if (outer !== undefined) outer.write(header as Buffer);
    const socket = contexts.connect(
      { host: t.address, port: t.inboundPort, allowed: ids.length > 0 ? ids : 'same-trust-domain' },
      // tls.connect passes allowHalfOpen to the TLSSocket (TCP proxy streams half-close); the typings omit it.
      { allowHalfOpen, ...(outer !== undefined ? { socket: outer } : {}) } as Partial<tls.ConnectionOptions>,
    );
    socket.setNoDelay(true);
    // Written before the handshake ends: TLS queues it and sends it as the first application data.
    if (header !== undefined && outer === undefined) holdSecureConnectUntilWritten(socket, header);
    let secure = false;
    socket.once('secureConnect', () => {
      secure = true;
      (socket.isSessionReused() ? resumed : ok).inc();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (secure) return;
      if (err.code === 'SKEIN_TLS_PEER_IDENTITY') {
        mismatch.inc();
        log.warn('refused a peer sidecar: its identity is not one this cluster allows', {
          target: `${t.address}:${t.inboundPort}`,
          error: err.message,
        });
      } else {
        failed.inc();
        const target = `${t.address}:${t.inboundPort}`;
        // A TLS problem (an expired certificate, another CA, a bad chain, a peer that does not speak TLS) is worth a
        // warning, once a minute per peer and cause; refused or reset connections (an endpoint going away) are not.
        if (isTlsError(err.code) && warnDue(`${target} ${err.code}`)) {
          log.warn('TLS handshake to a peer sidecar failed', { target, code: err.code, error: err.message.replace(/; try running Node\.js with --use-system-ca.*$/s, '') });
        } else log.debug('TLS handshake to a peer sidecar failed', { target, code: err.code });
      }
    });
    return socket;
  };
}

/**
 * Writes `header` and holds back 'secureConnect' until that write has completed. HTTP/2 sessions attach to the TLS
 * handle on 'secureConnect' and write to it natively; a JS write still in flight then aborts the process
 * (TLSWrap::DoWrite: !current_write_). HTTP/1.1 and TCP streams only see the event a little later.
 */
function holdSecureConnectUntilWritten(socket: tls.TLSSocket, header: Buffer): void {
  const emit = socket.emit;
  let written = false;
  let held: unknown[] | undefined;
  socket.emit = function (this: tls.TLSSocket, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'secureConnect') {
      if (!written) {
        held = args;
        return true;
      }
      socket.emit = emit;
    }
    return (emit as (e: string | symbol, ...a: unknown[]) => boolean).call(this, event, ...args);
  } as typeof socket.emit;
  socket.write(header, (err) => {
    written = true;
    if (held === undefined) return;
    socket.emit = emit;
    if (!err && !socket.destroyed) (emit as (e: string, ...a: unknown[]) => boolean).call(socket, 'secureConnect', ...held);
  });
}

/** Node's codes for a TLS failure: a peer certificate it could not accept (OpenSSL's verify errors) or a TLS alert. */
function isTlsError(code: string | undefined): boolean {
  return code !== undefined && /^(CERT_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|ERR_SSL_|ERR_TLS_CERT|INVALID_CA|PATH_LENGTH)/.test(code);
}
