// State-of-the-world ADS against a real grpc-js client: ACK, NACK, stale nonces, subscriptions, ordering, reconnects.
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { TYPE_URL, unpack } from '../../../proto/index.ts';
import { envoyNode, eventually, openSotw, resourceNames, type SotwReader } from './ads-client.ts';
import { cluster, endpoints, listener, route, baseSnapshot, TEST_SCOPE } from './fake-cache.ts';
import { type Harness, startHarness } from './harness.ts';

const SCOPE = TEST_SCOPE;
let h: Harness;
afterEach(async () => {
  await h?.close();
});

const base = baseSnapshot;


/** ACKs the next response, repeating the names subscribed for its type (an ACK that changed them would be a new request). */
async function ackNext(s: SotwReader, subscribed: Record<string, string[]> = {}) {
  const r = await s.next();
  s.send({
    type_url: r.type_url,
    version_info: r.version_info,
    response_nonce: r.nonce,
    resource_names: subscribed[r.type_url] ?? [],
  });
  return r;
}

describe('SotW ADS', () => {
  it('answers a wildcard CDS request with every cluster and records the ACK', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('sidecar~10.0.0.9~web-1.default~default.svc.cluster.local'), type_url: TYPE_URL.cluster });
    const r = await s.next();
    expect(r.type_url).toBe(TYPE_URL.cluster);
    expect(resourceNames(r)).toEqual(['a', 'b']);
    expect(r.nonce).not.toBe('');
    expect(r.version_info).not.toBe('');
    s.send({ type_url: TYPE_URL.cluster, version_info: r.version_info, response_nonce: r.nonce });
    await eventually(() => {
      const [proxy] = h.status.list({ resources: true });
      expect(proxy?.scope).toBe(SCOPE);
      expect(proxy?.userAgent).toBe('envoy/1.30.0');
      expect(proxy?.types[0]).toMatchObject({ type: 'CDS', state: 'SYNCED', ackedVersion: r.version_info });
      expect(proxy?.types[0]?.resources?.map((x) => x.ackedVersion !== null && x.ackedVersion === x.sentVersion)).toEqual([true, true]);
    });
    expect(await h.server.metrics.registry.getSingleMetricAsString('skein_xds_connected_proxies')).toMatch(/ 1$/m);
  });

  it('keeps going after a NACK: records the error and its resources, does not resend the same version', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('n1'), type_url: TYPE_URL.cluster });
    const r = await s.next();
    s.send({
      type_url: TYPE_URL.cluster,
      version_info: '',
      response_nonce: r.nonce,
      error_detail: { code: 3, message: 'cluster b: lb_policy LEAST_REQUEST is not supported' },
    });
    // Barrier: a later type in ADS order. Were the NACK answered, CDS would arrive first.
    s.send({ type_url: TYPE_URL.route, resource_names: ['outbound/default'] });
    expect((await s.next()).type_url).toBe(TYPE_URL.route);
    const [proxy] = h.status.list();
    expect(proxy?.types[0]).toMatchObject({
      type: 'CDS',
      state: 'NACKED',
      lastNack: { version: r.version_info, message: 'cluster b: lb_policy LEAST_REQUEST is not supported', resourceNames: ['b'] },
    });
    expect(await h.server.metrics.registry.getSingleMetricAsString('skein_xds_nacks_total')).toContain('type="CDS"} 1');
    expect(h.logs.some((l) => l.message.includes('NACK') && l.fields.nodeId === 'n1')).toBe(true);
    // A fixed config is pushed and ACKed: the type is SYNCED again, the NACK stays visible.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b', 2)] } } });
    const fixed = await s.next();
    expect(fixed.version_info).not.toBe(r.version_info);
    s.send({ type_url: TYPE_URL.cluster, version_info: fixed.version_info, response_nonce: fixed.nonce });
    await eventually(() => expect(h.status.list()[0]?.types[0]?.state).toBe('SYNCED'));
    expect(h.status.list()[0]?.types[0]?.lastNack?.message).toContain('LEAST_REQUEST');
  });

  it('offers again, once, the ClusterLoadAssignments a NACK dropped without naming them (EDS goes one by one)', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('n-eds'), type_url: TYPE_URL.endpoint, resource_names: ['a', 'b'] });
    expect(resourceNames(await ackNext(s, { [TYPE_URL.endpoint]: ['a', 'b'] }))).toEqual(['a', 'b']);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.9.0.1'), endpoints('b', '10.9.0.2')] } } });
    const r = await s.next();
    expect(resourceNames(r)).toEqual(['a', 'b']);
    const nack = (x: { nonce: string }, message: string) =>
      s.send({ type_url: TYPE_URL.endpoint, version_info: '', resource_names: ['a', 'b'], response_nonce: x.nonce, error_detail: { code: 3, message } });
    nack(r, 'cluster_name a: endpoint 10.9.0.1 is not allowed');
    // b went down with a: it comes again; a does not. The retry is NACKed too (naming nothing): no loop.
    const retry = await s.next();
    expect(resourceNames(retry)).toEqual(['b']);
    nack(retry, 'no');
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('missing', '10.9.0.3')] } } });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.9.0.4')] } } });
    expect(resourceNames(await s.next())).toEqual(['a']);
  });

  it('logs the first 2000 characters of a huge NACK text and keeps it whole in the proxy status', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('n1'), type_url: TYPE_URL.cluster });
    const r = await s.next();
    const huge = `cluster b: ${'x'.repeat(100_000)}`;
    s.send({ type_url: TYPE_URL.cluster, version_info: '', response_nonce: r.nonce, error_detail: { code: 3, message: huge } });
    await eventually(() => expect(h.status.list()[0]?.types[0]?.state).toBe('NACKED'));
    expect(h.status.list()[0]?.types[0]?.lastNack?.message).toBe(huge);
    const logged = h.logs.find((l) => l.message.includes('NACK'));
    expect(String(logged?.fields.reason).length).toBeLessThan(2200);
    expect(String(logged?.fields.reason)).toContain('100011 characters; the whole text: skein proxy-status');
  });

  it('ignores a request whose nonce is not the latest sent, answers the one that is', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('n'), type_url: TYPE_URL.endpoint, resource_names: ['a'] });
    const first = await s.next();
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.0.0.7')] } } });
    const second = await s.next();
    expect(second.nonce).not.toBe(first.nonce);
    // Stale: carries the first nonce and a new subscription; must be ignored.
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['a', 'b'], response_nonce: first.nonce, version_info: first.version_info });
    s.send({ type_url: TYPE_URL.route, resource_names: ['outbound/default'] });
    expect((await s.next()).type_url).toBe(TYPE_URL.route);
    // Current nonce with the new subscription: answered at once with the newly subscribed one (EDS is incremental).
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['a', 'b'], response_nonce: second.nonce, version_info: second.version_info });
    const third = await s.next();
    expect(third.type_url).toBe(TYPE_URL.endpoint);
    expect(resourceNames(third)).toEqual(['b']);
  });

  it('sends EDS and RDS incrementally: only changed or newly subscribed resources, CDS as the whole state', async () => {
    h = await startHarness({
      [SCOPE]: {
        ...base()[SCOPE],
        [TYPE_URL.route]: { put: [route('outbound/default', 'a'), route('inbound/default', 'b')] },
      },
    });
    const s = openSotw(h.client());
    const subscribed = { [TYPE_URL.endpoint]: ['a', 'b'], [TYPE_URL.route]: ['outbound/default', 'inbound/default'] };
    s.send({ node: envoyNode('n'), type_url: TYPE_URL.cluster });
    s.send({ type_url: TYPE_URL.endpoint, resource_names: subscribed[TYPE_URL.endpoint] });
    s.send({ type_url: TYPE_URL.route, resource_names: subscribed[TYPE_URL.route] });
    const initial = [await ackNext(s, subscribed), await ackNext(s, subscribed), await ackNext(s, subscribed)];
    expect(initial.map(resourceNames)).toEqual([['a', 'b'], ['a', 'b'], ['inbound/default', 'outbound/default']]);
    h.cache.publish({
      [SCOPE]: {
        [TYPE_URL.cluster]: { put: [cluster('c')] },
        [TYPE_URL.endpoint]: { put: [endpoints('b', '10.0.0.9')] },
        [TYPE_URL.route]: { put: [route('inbound/default', 'a')] },
      },
    });
    const cds = await ackNext(s, subscribed);
    expect(resourceNames(cds)).toEqual(['a', 'b', 'c']);
    const eds = await ackNext(s, subscribed);
    expect(eds.type_url).toBe(TYPE_URL.endpoint);
    expect(resourceNames(eds)).toEqual(['b']);
    expect(eds.version_info).not.toBe(initial[1]?.version_info);
    const rds = await ackNext(s, subscribed);
    expect(resourceNames(rds)).toEqual(['inbound/default']);
    // A change that reverts before it is sent, and one to a name nobody subscribed, send nothing; the next real one does.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.0.0.5')] } } });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.0.0.1'), endpoints('zz', '10.0.0.6')] } } });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.0.0.7')] } } });
    const next = await s.next();
    expect(resourceNames(next)).toEqual(['a']);
    expect(JSON.stringify(unpack(next.resources[0]!))).toContain('10.0.0.7');
    await eventually(() => {
      const eds = h.status.list()[0]?.types.find((t) => t.type === 'EDS');
      expect(eds?.sentVersion).toBe(next.version_info);
    });
  });

  it('answers EDS with the requested names that exist, and only pushes changes to subscribed names', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('n'), type_url: TYPE_URL.endpoint, resource_names: ['a', 'missing'] });
    const r = await s.next();
    expect(resourceNames(r)).toEqual(['a']);
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['a', 'missing'], response_nonce: r.nonce, version_info: r.version_info });
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['nothing-here'], response_nonce: r.nonce });
    const empty = await s.next();
    expect(empty.resources).toEqual([]);
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['a'], response_nonce: empty.nonce });
    expect(resourceNames(await s.next())).toEqual(['a']);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('b', '10.9.9.9')] } } });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.1.1.1')] } } });
    const pushed = await s.next();
    expect(resourceNames(pushed)).toEqual(['a']);
    expect(JSON.stringify(unpack(pushed.resources[0]!))).toContain('10.1.1.1');
  });

  it('sends CDS, EDS, LDS, RDS in that order when one snapshot changes all four', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    // Subscribe in reverse order on purpose.
    s.send({ node: envoyNode('n'), type_url: TYPE_URL.route, resource_names: ['outbound/default'] });
    s.send({ type_url: TYPE_URL.listener });
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['a', 'b'] });
    s.send({ type_url: TYPE_URL.cluster });
    const initial = [];
    const subscribed = { [TYPE_URL.route]: ['outbound/default'], [TYPE_URL.endpoint]: ['a', 'b'] };
    for (let i = 0; i < 4; i++) initial.push(await ackNext(s, subscribed));
    expect(new Set(initial.map((r) => r.type_url)).size).toBe(4);
    h.cache.publish({
      [SCOPE]: {
        [TYPE_URL.route]: { put: [route('outbound/default', 'b')] },
        [TYPE_URL.listener]: { put: [listener('virtualOutbound', 15002)] },
        [TYPE_URL.endpoint]: { put: [endpoints('b', '10.0.0.3')] },
        [TYPE_URL.cluster]: { put: [cluster('c')] },
      },
    });
    const order = [];
    for (let i = 0; i < 4; i++) order.push((await s.next()).type_url);
    expect(order).toEqual([TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route]);
  });

  it('serves a reconnecting proxy the current state and drops the old stream from the status', async () => {
    h = await startHarness(base());
    const c = h.client();
    const s1 = openSotw(c);
    s1.send({ node: envoyNode('n-re'), type_url: TYPE_URL.cluster });
    const r1 = await s1.next();
    s1.send({ type_url: TYPE_URL.cluster, version_info: r1.version_info, response_nonce: r1.nonce });
    await eventually(() => expect(h.status.list()[0]?.types[0]?.state).toBe('SYNCED'));
    s1.close();
    await eventually(() => expect(h.status.size).toBe(0));
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('c')], remove: ['a'] } } });
    const s2 = openSotw(c);
    s2.send({ node: envoyNode('n-re'), type_url: TYPE_URL.cluster, version_info: r1.version_info });
    const r2 = await s2.next();
    expect(resourceNames(r2)).toEqual(['b', 'c']);
    expect(r2.version_info).not.toBe(r1.version_info);
    expect(h.status.list().map((p) => p.nodeId)).toEqual(['n-re']);
    expect(await h.server.metrics.registry.getSingleMetricAsString('skein_xds_connected_proxies')).toMatch(/ 1$/m);
  });

  it('answers nothing for an unknown type URL but records it, and keeps serving the stream', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('n-unk'), type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret' });
    s.send({ type_url: TYPE_URL.cluster });
    expect((await s.next()).type_url).toBe(TYPE_URL.cluster);
    expect(h.status.list()[0]?.unknownTypeUrls).toEqual(['type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret']);
    expect(h.logs.some((l) => l.fields.nodeId === 'n-unk' && String(l.fields.typeUrl).endsWith('Secret'))).toBe(true);
  });

  it('ends a stream whose first request has no node with INVALID_ARGUMENT, without affecting others', async () => {
    h = await startHarness(base());
    const good = openSotw(h.client());
    good.send({ node: envoyNode('good'), type_url: TYPE_URL.cluster });
    await good.next();
    const bad = openSotw(h.client());
    bad.send({ type_url: TYPE_URL.cluster });
    const st = await bad.ended();
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.details).toBe('first request must carry node.id');
    expect(h.logs.some((l) => l.level === 'warn' && l.fields.reason === 'first request must carry node.id' && l.fields.nodeId === '(not sent yet)')).toBe(true);
    expect(await h.server.metrics.registry.metrics()).toContain('skein_xds_rejected_requests_total{reason="no_node"} 1');
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('z')] } } });
    expect(resourceNames(await good.next())).toEqual(['a', 'b', 'z']);
  });

  it('reaches 50 streams with one publish', async () => {
    h = await startHarness(base());
    const c = h.client();
    const streams = Array.from({ length: 50 }, () => openSotw(c));
    streams.forEach((s, i) => s.send({ node: envoyNode(`n${i}`), type_url: TYPE_URL.endpoint, resource_names: ['a'] }));
    for (const s of streams) await ackNext(s, { [TYPE_URL.endpoint]: ['a'] });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.2.2.2')] } } });
    const got = await Promise.all(streams.map((s) => s.next()));
    expect(got.every((r) => JSON.stringify(unpack(r.resources[0]!)).includes('10.2.2.2'))).toBe(true);
    expect(h.status.size).toBe(50);
  });

  it('ends the streams with UNAVAILABLE on shutdown', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('n'), type_url: TYPE_URL.cluster });
    await s.next();
    await h.server.close();
    expect((await s.ended()).code).toBe(grpc.status.UNAVAILABLE);
  });

  it('handles subscriptions of real size (ACKs of tens of KB, read compacted) with the same protocol', async () => {
    const many = Array.from({ length: 1000 }, (_, i) => `outbound|80||svc-${i}.ns.svc.cluster.local`);
    h = await startHarness({ [SCOPE]: { [TYPE_URL.endpoint]: { put: many.map((n) => endpoints(n, '10.0.0.1')) } } });
    const s = openSotw(h.client());
    const other = openSotw(h.client());
    s.send({ node: envoyNode('big'), type_url: TYPE_URL.endpoint, resource_names: many });
    other.send({ node: envoyNode('big-2'), type_url: TYPE_URL.endpoint, resource_names: many });
    const first = await ackNext(s, { [TYPE_URL.endpoint]: many });
    expect(first.resources.length).toBe(1000);
    await ackNext(other, { [TYPE_URL.endpoint]: many });
    await eventually(() => expect(h.status.list().every((p) => p.types[0]?.state === 'SYNCED')).toBe(true));
    // A change: only the changed resource, to both; ACKed with the whole list again (the common SotW ACK).
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints(many[7]!, '10.0.0.2')] } } });
    const pushed = await ackNext(s, { [TYPE_URL.endpoint]: many });
    expect(resourceNames(pushed)).toEqual([many[7]]);
    expect(resourceNames(await ackNext(other, { [TYPE_URL.endpoint]: many }))).toEqual([many[7]]);
    // The same names in another order are the same subscription: nothing to send. A new name is answered alone.
    s.send({ type_url: TYPE_URL.endpoint, version_info: pushed.version_info, response_nonce: pushed.nonce, resource_names: [...many].reverse() });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('extra', '10.0.0.3')] } } });
    const withExtra = [...many, 'extra'];
    s.send({ type_url: TYPE_URL.endpoint, version_info: pushed.version_info, response_nonce: pushed.nonce, resource_names: withExtra });
    const added = await s.next();
    expect(resourceNames(added)).toEqual(['extra']);
    // A NACK of it (with the whole list) is recorded, nothing is resent, the last good version stays ACKed.
    s.send({
      type_url: TYPE_URL.endpoint,
      version_info: pushed.version_info,
      response_nonce: added.nonce,
      resource_names: withExtra,
      error_detail: { code: 3, message: 'extra: bad endpoint' },
    });
    // A stale nonce with a smaller list is ignored.
    s.send({ type_url: TYPE_URL.endpoint, version_info: first.version_info, response_nonce: first.nonce, resource_names: ['x'] });
    await eventually(() => {
      const eds = h.status.list({ nodeId: 'big' })[0]?.types[0];
      expect(eds).toMatchObject({ state: 'NACKED', ackedVersion: pushed.version_info, subscribed: '1001' });
      expect(eds?.lastNack?.resourceNames).toEqual(['extra']);
    });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints(many[9]!, '10.0.0.4')] } } });
    expect(resourceNames(await s.next())).toEqual([many[9]]);
    expect(s.buffered).toBe(0);
  });
});

