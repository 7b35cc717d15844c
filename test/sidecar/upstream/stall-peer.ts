// For the stall tests of upstream timeouts: a request to dispatch, and a connected socket pair (ours and the peer's).
import net from 'node:net';
import type { DispatchRequest } from '../../../sidecar/upstream/index.ts';

export function stallRequest(timeoutMs = 0): DispatchRequest {
  return { cluster: 'outbound|80||api.default.svc.cluster.local', method: 'GET', path: '/', authority: 'api', headers: [], body: null, hash: undefined, wantsH2: false, timeoutMs };
}

/** A loopback connection: `upstream` is the sidecar's side, `peer` the server's (which answers by writing to it). */
export async function connectedPair(): Promise<{ upstream: net.Socket; peer: net.Socket; close(): Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const upstream = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => upstream.once('connect', r));
  const peer = await accepted;
  return {
    upstream,
    peer,
    async close() {
      upstream.destroy();
      peer.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
