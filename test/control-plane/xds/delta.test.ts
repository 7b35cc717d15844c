// Incremental ADS against a real grpc-js client: wildcard, subscribe/unsubscribe, removals, resume, ACK/NACK.
import { afterEach, describe, expect, it } from 'vitest';
import { TYPE_URL, unpack } from '../../../proto/index.ts';
import { type DeltaReader, envoyNode, eventually, openDelta } from './ads-client.ts';
import { cluster, endpoints, listener, route, baseSnapshot, TEST_SCOPE } from './fake-cache.ts';
import { type Harness, startHarness } from './harness.ts';

const SCOPE = TEST_SCOPE;
let h: Harness;
afterEach(async () => {
  await h?.close();
});

const base = baseSnapshot;

const names = (r: { resources: { name: string }[] }) => r.resources.map((x) => x.name).sort();

async function ack(s: DeltaReader) {
  const r = await s.next();
  s.send({ type_url: r.type_url, response_nonce: r.nonce });
  return r;
}

describe('delta ADS', () => {
  it('treats an empty first CDS subscribe as wildcard and sends per-resource versions', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('d1'), type_url: TYPE_URL.cluster });
    const r = await ack(s);
    expect(names(r)).toEqual(['a', 'b']);
    const current = h.cache.current().scopes.get(SCOPE)?.get(TYPE_URL.cluster);
    for (const res of r.resources) {
      expect(res.version).toBe(current?.get(res.name)?.version);
      expect(unpack<{ name: string }>(res.resource!).name).toBe(res.name);
    }
    expect(r.system_version_info).toBe(String(h.cache.current().serial));
    await eventually(() => {
      const cds = h.status.list({ resources: true })[0]?.types[0];
      expect(cds).toMatchObject({ type: 'CDS', state: 'SYNCED', subscribed: '*' });
      expect(cds?.resources?.every((x) => x.ackedVersion === x.sentVersion)).toBe(true);
    });
    // Only the changed cluster is sent on the next publish.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b', 3)] } } });
    const pushed = await s.next();
    expect(names(pushed)).toEqual(['b']);
    expect(pushed.removed_resources).toEqual([]);
  });

  it('subscribes and unsubscribes by name, and answers names that do not exist with removed_resources', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('d2'), type_url: TYPE_URL.endpoint, resource_names_subscribe: ['a'] });
    expect(names(await ack(s))).toEqual(['a']);
    s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['b', 'missing'] });
    const second = await ack(s);
    expect(names(second)).toEqual(['b']);
    expect(second.removed_resources).toEqual(['missing']);
    s.send({ type_url: TYPE_URL.endpoint, resource_names_unsubscribe: ['a'] });
    await eventually(() => expect(h.status.list()[0]?.types[0]?.subscribed).toBe('2'));
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.5.5.5')] } } });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('b', '10.6.6.6')] } } });
    const pushed = await ack(s);
    expect(names(pushed)).toEqual(['b']);
    // The name that appears later is delivered to the client that asked for it.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('missing', '10.7.7.7')] } } });
    expect(names(await ack(s))).toEqual(['missing']);
  });

  it('sends a name subscribed later even after the held state was re-based on a map that has it', async () => {
    const many = Array.from({ length: 120 }, (_, i) => endpoints(`e${String(i).padStart(3, '0')}`, `10.9.0.${i}`));
    h = await startHarness({ [SCOPE]: { [TYPE_URL.endpoint]: { put: many } } });
    const s = openDelta(h.client());
    const first = many.slice(0, 100).map((r) => r.name);
    s.send({ node: envoyNode('d-rebase'), type_url: TYPE_URL.endpoint, resource_names_subscribe: first });
    expect(names(await ack(s))).toEqual(first);
    // 100 sends re-based this stream's held state on the whole map, which also has e100..e119. e005, held already,
    // is sent again too: a subscription is always answered with the resource (the client may have forgotten it).
    s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['e110', 'e005'] });
    expect(names(await ack(s))).toEqual(['e005', 'e110']);
    s.send({ type_url: TYPE_URL.endpoint, resource_names_unsubscribe: ['e005'] });
    s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['e005'] });
    expect(names(await ack(s))).toEqual(['e005']);
  });

  it('sends removed_resources for a resource that disappears', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('d3'), type_url: TYPE_URL.cluster, resource_names_subscribe: ['*'] });
    await ack(s);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { remove: ['a'] } } });
    const r = await s.next();
    expect(r.resources).toEqual([]);
    expect(r.removed_resources).toEqual(['a']);
  });

  it('resumes from initial_resource_versions: unchanged resources are not resent, vanished ones are removed', async () => {
    h = await startHarness(base());
    const c = h.client();
    const s1 = openDelta(c);
    s1.send({ node: envoyNode('d4'), type_url: TYPE_URL.cluster });
    const first = await ack(s1);
    const held = Object.fromEntries(first.resources.map((r) => [r.name, r.version]));
    s1.close();
    await eventually(() => expect(h.status.size).toBe(0));
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b', 5), cluster('c')] } } });
    const s2 = openDelta(c);
    s2.send({
      node: envoyNode('d4'),
      type_url: TYPE_URL.cluster,
      initial_resource_versions: { ...held, gone: 'v-old' },
    });
    const r = await s2.next();
    expect(names(r)).toEqual(['b', 'c']);
    expect(r.removed_resources).toEqual(['gone']);
  });

  it('records a NACK with its text and resources and does not resend the rejected version', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('d5'), type_url: TYPE_URL.route, resource_names_subscribe: ['outbound/default'] });
    const r = await s.next();
    s.send({
      type_url: TYPE_URL.route,
      response_nonce: r.nonce,
      error_detail: { code: 3, message: 'route outbound/default: virtual host vh has duplicate domain *' },
    });
    // Barrier: a new subscription must be answered on its own.
    s.send({ type_url: TYPE_URL.listener });
    expect((await s.next()).type_url).toBe(TYPE_URL.listener);
    await eventually(() => {
      const rds = h.status.list({ resources: true })[0]?.types.find((t) => t.type === 'RDS');
      expect(rds).toMatchObject({ state: 'NACKED', lastNack: { resourceNames: ['outbound/default'] } });
      expect(rds?.resources?.[0]).toMatchObject({ name: 'outbound/default', ackedVersion: null });
    });
    // Another publish that leaves the route as it was: nothing is sent for it.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.route]: { put: [route('outbound/default', 'a')] } } });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.listener]: { put: [listener('virtualOutbound', 15009)] } } });
    expect((await s.next()).type_url).toBe(TYPE_URL.listener);
  });

  it('offers again, once, what a NACK dropped without naming it: updates and removals, not the named resource', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('d7'), type_url: TYPE_URL.cluster });
    expect(names(await ack(s))).toEqual(['a', 'b']);
    // One response: c and d added, a changed, b removed. The proxy rejects it whole over d, naming d only.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('a', 4), cluster('c'), cluster('d')], remove: ['b'] } } });
    const r = await s.next();
    expect([names(r), r.removed_resources]).toEqual([['a', 'c', 'd'], ['b']]);
    s.send({ type_url: TYPE_URL.cluster, response_nonce: r.nonce, error_detail: { code: 3, message: 'cluster d: lb_policy is not supported' } });
    // What it dropped comes again (a, c, and b's removal), d does not; the proxy rejects the retry too, naming nothing.
    const retry = await s.next();
    expect([names(retry), retry.removed_resources]).toEqual([['a', 'c'], ['b']]);
    s.send({ type_url: TYPE_URL.cluster, response_nonce: retry.nonce, error_detail: { code: 3, message: 'no' } });
    // No loop: the next response carries only what changes next.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('e')] } } });
    const next = await ack(s);
    expect([names(next), next.removed_resources]).toEqual([['e'], []]);
    await eventually(() => {
      const cds = h.status.list({ resources: true })[0]?.types[0];
      const acked = Object.fromEntries((cds?.resources ?? []).map((x) => [x.name, x.ackedVersion !== null]));
      // As the proxy holds it: its old a (ACKed), b (the removal was rejected with the retry), neither c nor d, and e.
      expect(acked).toEqual({ a: true, b: true, c: false, d: false, e: true });
    });
  });

  it('counts a NACK that names none of the response\'s resources against all of them (nothing is resent)', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('d8'), type_url: TYPE_URL.cluster });
    await ack(s);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('c')] } } });
    const r = await s.next();
    s.send({ type_url: TYPE_URL.cluster, response_nonce: r.nonce, error_detail: { code: 3, message: 'rejected' } });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('e')] } } });
    expect(names(await ack(s))).toEqual(['e']);
  });

  it('drops resources held only through the wildcard when the client unsubscribes from *', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('d6'), type_url: TYPE_URL.cluster, resource_names_subscribe: ['*', 'a'] });
    expect(names(await ack(s))).toEqual(['a', 'b']);
    s.send({ type_url: TYPE_URL.cluster, resource_names_unsubscribe: ['*'] });
    await eventually(() => expect(h.status.list()[0]?.types[0]?.subscribed).toBe('1'));
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b', 9), cluster('a', 9)] } } });
    expect(names(await s.next())).toEqual(['a']);
  });
});
