// A gRPC call to a Service port declared HTTP/1.1 whose app speaks only HTTP/1.1: the failure says why.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster, closeServer, domains, endpoint, mesh, route, startApp, startPair } from './harness.ts';
import type { Pair } from './harness.ts';
import { unary } from './grpc-helpers.ts';

const WEB = 'outbound|80||web.default.svc.cluster.local';

describe('gRPC to an HTTP/1.1 port', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startApp>>;

  beforeAll(async () => {
    app = await startApp('web');
    pair = await startPair([app.port]);
    pair.client.update(mesh([cluster(WEB, [endpoint(app.port, pair.inbound)])], [{ name: 'web', domains: domains('web', 'default', '10.96.0.40', 80, true), routes: [route(WEB)] }]));
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app.server);
  });

  it('is UNAVAILABLE naming the declared protocol and how to declare gRPC', async () => {
    const c = new grpc.Client(`127.0.0.1:${pair.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'web.default' });
    try {
      const r = await unary(c, '/demo.Echo/Say', 'hi');
      expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.error?.details).toContain(`whose port is declared HTTP/1.1: if the app speaks gRPC, name the port grpc-* or set appProtocol: grpc`);
    } finally {
      c.close();
    }
  });
});
