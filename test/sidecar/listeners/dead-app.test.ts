// A live sidecar in front of a dead app (nothing listening on the app port): a readable 503, and a retry elsewhere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeServer, cluster, domains, endpoint, freePort, mesh, request, route, startApp, startPair } from './harness.ts';
import type { Pair } from './harness.ts';

const SVC = 'outbound|80||mixed.default.svc.cluster.local';
const DEAD = 'outbound|80||dead.default.svc.cluster.local';

describe('an endpoint whose sidecar is up but whose app is not', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startApp>>;
  let deadPort: number;

  beforeAll(async () => {
    app = await startApp('live');
    deadPort = await freePort();
    pair = await startPair([app.port, deadPort]);
    const m = mesh(
      [
        cluster(SVC, [endpoint(deadPort, pair.inbound), endpoint(app.port, pair.inbound)], { lbPolicy: 'round-robin' }),
        cluster(DEAD, [endpoint(deadPort, pair.inbound)]),
      ],
      [
        { name: 'mixed', domains: domains('mixed', 'default', '10.96.0.50', 80, true), routes: [route(SVC)] },
        { name: 'dead', domains: domains('dead', 'default', '10.96.0.51', 80, true), routes: [route(DEAD)] },
      ],
    );
    pair.client.update(m);
    pair.server.update(m);
  });

  afterAll(async () => {
    await pair.close();
    await closeServer(app.server);
  });

  it('answers 503 upstream_connect_error naming the app port, not a reset blamed on the peer sidecar', async () => {
    const r = await request(pair.outbound, { host: 'dead.default', path: '/x' });
    expect(r.status).toBe(503);
    expect(r.headers['x-skein-reason']).toBe('upstream_connect_error');
    expect(r.body).toContain(`ECONNREFUSED app port ${deadPort}`);
  });

  it('sends a bodiless request to another endpoint: every request is answered by the live one', async () => {
    for (let i = 0; i < 8; i++) {
      const r = await request(pair.outbound, { host: 'mixed.default', path: `/n${i}` });
      expect(r.status, r.body).toBe(200);
    }
    const retries = (await pair.clientRegistry.getSingleMetric('skein_upstream_connect_retries_total')?.get())?.values[0]?.value ?? 0;
    expect(retries).toBeGreaterThan(0);
  });
});
