// A proxy that stops reading: it must not hold up others, its backlog is coalesced, and it is closed in the end.
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { TYPE_URL } from '../../../proto/index.ts';
import { envoyNode, eventually, openSotw } from './ads-client.ts';
import { endpoints } from './fake-cache.ts';
import { type Harness, startHarness } from './harness.ts';

const SCOPE = 'envoy/default';
let h: Harness;
afterEach(async () => {
  await h?.close();
});

/** A ClusterLoadAssignment of about 100 KB. */
const big = (generation: number) =>
  endpoints('big', ...Array.from({ length: 4_000 }, (_, i) => `10.${generation % 250}.${i >> 8}.${i & 255}`));

describe('backpressure', () => {
  it('keeps serving others while one client never reads, then closes it with RESOURCE_EXHAUSTED', async () => {
    h = await startHarness(
      { [SCOPE]: { [TYPE_URL.endpoint]: { put: [big(0), endpoints('small', '10.0.0.1')] } } },
      { maxBufferedBytes: 256 * 1024, backlogLimitMs: 1500 },
    );
    const stuck = openSotw(h.client());
    stuck.call.pause();
    stuck.send({ node: envoyNode('stuck'), type_url: TYPE_URL.endpoint, resource_names: ['big', 'small'] });
    const healthy = openSotw(h.client());
    healthy.send({ node: envoyNode('healthy'), type_url: TYPE_URL.endpoint, resource_names: ['small'] });
    await healthy.next();
    // The client buffers 16 messages before it stops reading from the socket: publish well beyond that.
    const publishes = 40;
    for (let g = 1; g <= publishes; g++) {
      h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [big(g), endpoints('small', `10.0.1.${g}`)] } } });
      const r = await healthy.next();
      expect(r.resources).toHaveLength(1);
    }
    // The stuck stream got at most a few responses before it stopped being written to.
    const pushes = await h.server.metrics.registry.getSingleMetric('skein_xds_pushes_total')?.get();
    const eds = pushes?.values.find((v) => v.labels.type === 'EDS')?.value ?? 0;
    const toStuck = eds - (publishes + 1);
    expect(toStuck).toBeGreaterThanOrEqual(1);
    expect(toStuck).toBeLessThan(publishes);
    await eventually(() => expect(h.status.list().map((p) => p.nodeId)).toEqual(['healthy']), 10_000);
    const closed = h.logs.find((l) => l.fields.nodeId === 'stuck');
    expect(closed).toMatchObject({ level: 'error', fields: { code: 'RESOURCE_EXHAUSTED' } });
    stuck.call.resume();
    expect((await stuck.ended()).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // The healthy stream is still served.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('small', '10.0.2.1')] } } });
    expect((await healthy.next()).resources).toHaveLength(1);
  });

  it('shares a server-wide send budget: streams take turns, a stuck one stops holding it, everyone gets served', async () => {
    // A budget smaller than one response: every write waits until the previous ones reached their sockets.
    h = await startHarness(
      { [SCOPE]: { [TYPE_URL.endpoint]: { put: [big(0), endpoints('small', '10.0.0.1')] } } },
      { maxInFlightBytes: 1024, backlogLimitMs: 20_000 },
    );
    const stuck = openSotw(h.client());
    stuck.call.pause();
    stuck.send({ node: envoyNode('stuck'), type_url: TYPE_URL.endpoint, resource_names: ['big'] });
    const clients = Array.from({ length: 6 }, () => openSotw(h.client()));
    clients.forEach((c, i) => c.send({ node: envoyNode(`c${i}`), type_url: TYPE_URL.endpoint, resource_names: ['big', 'small'] }));
    for (const c of clients) expect((await c.next()).resources).toHaveLength(2);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [big(1)] } } });
    for (const c of clients) expect((await c.next()).resources).toHaveLength(1);
    stuck.call.resume();
    expect((await stuck.next()).resources.length).toBeGreaterThanOrEqual(1);
    stuck.call.cancel();
    for (const c of clients) c.call.cancel();
  });
});
