// Points of Envoy's xDS protocol doc checked against a real grpc-js client: cluster warming, re-subscription, "*".
import { afterEach, describe, expect, it } from 'vitest';
import { TYPE_URL } from '../../../proto/index.ts';
import { type DeltaReader, envoyNode, openDelta, openSotw, resourceNames, type SotwReader } from './ads-client.ts';
import { cluster, endpoints, listener, route, routeTable } from './fake-cache.ts';
import { type Harness, startHarness } from './harness.ts';

const SCOPE = 'envoy/default';
let h: Harness;
afterEach(async () => {
  await h?.close();
});

const base = () => ({
  [SCOPE]: {
    [TYPE_URL.cluster]: { put: [cluster('a'), cluster('b'), cluster('c')] },
    [TYPE_URL.endpoint]: { put: [endpoints('a', '10.0.0.1'), endpoints('b', '10.0.0.2'), endpoints('c', '10.0.0.3')] },
    [TYPE_URL.listener]: { put: [listener('virtualOutbound')] },
    [TYPE_URL.route]: { put: [route('outbound/default', 'a')] },
  },
});

const deltaNames = (r: { resources: { name: string }[] }) => r.resources.map((x) => x.name).sort();

/** Reads the next SotW response and ACKs it with the names given for its type. */
async function sotwAck(s: SotwReader, subscribed: Record<string, string[]> = {}) {
  const r = await s.next();
  s.send({ type_url: r.type_url, version_info: r.version_info, response_nonce: r.nonce, resource_names: subscribed[r.type_url] ?? [] });
  return r;
}

async function deltaAck(s: DeltaReader) {
  const r = await s.next();
  s.send({ type_url: r.type_url, response_nonce: r.nonce });
  return r;
}

/** A SotW stream on CDS, EDS (a and b), LDS and RDS (outbound/default), every first response ACKed. */
async function sotwSubscribedToAll(id: string) {
  const s = openSotw(h.client());
  const subscribed = { [TYPE_URL.endpoint]: ['a', 'b'], [TYPE_URL.route]: ['outbound/default'] };
  s.send({ node: envoyNode(id), type_url: TYPE_URL.cluster });
  s.send({ type_url: TYPE_URL.endpoint, resource_names: subscribed[TYPE_URL.endpoint] });
  s.send({ type_url: TYPE_URL.listener });
  s.send({ type_url: TYPE_URL.route, resource_names: subscribed[TYPE_URL.route] });
  for (let i = 0; i < 4; i++) await sotwAck(s, subscribed);
  return { s, subscribed };
}

/** The same on delta. */
async function deltaSubscribedToAll(id: string) {
  const s = openDelta(h.client());
  s.send({ node: envoyNode(id), type_url: TYPE_URL.cluster });
  s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['a', 'b'] });
  s.send({ type_url: TYPE_URL.listener });
  s.send({ type_url: TYPE_URL.route, resource_names_subscribe: ['outbound/default'] });
  for (let i = 0; i < 4; i++) await deltaAck(s);
  return s;
}

/** A response type later in ADS order than `typeUrl`'s, sent as a barrier: it arrives first if nothing else was due. */
async function nothingPending(s: SotwReader | DeltaReader, sotw: boolean): Promise<string> {
  if (sotw) (s as SotwReader).send({ type_url: TYPE_URL.route, resource_names: ['outbound/default'] });
  else (s as DeltaReader).send({ type_url: TYPE_URL.route, resource_names_subscribe: ['outbound/default'] });
  return (await s.next()).type_url;
}

describe('resource warming: a changed Cluster gets its ClusterLoadAssignment again', () => {
  it('SotW: the CLA of a cluster whose connect timeout changed is sent after CDS, and only that one', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    const subscribed = { [TYPE_URL.endpoint]: ['a', 'b'] };
    s.send({ node: envoyNode('w1'), type_url: TYPE_URL.cluster });
    await sotwAck(s, subscribed);
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['a', 'b'] });
    expect(resourceNames(await sotwAck(s, subscribed))).toEqual(['a', 'b']);
    // b's Cluster changes, its endpoints do not; c (not subscribed in EDS) changes too.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b', 5), cluster('c', 5)] } } });
    const cds = await sotwAck(s, subscribed);
    expect(cds.type_url).toBe(TYPE_URL.cluster);
    const eds = await sotwAck(s, subscribed);
    expect(eds.type_url).toBe(TYPE_URL.endpoint);
    expect(resourceNames(eds)).toEqual(['b']);
    // Nothing else was due (no second EDS response).
    expect(await nothingPending(s, true)).toBe(TYPE_URL.route);
  });

  it('delta: the CLA of a changed cluster is resent although its version is unchanged', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('w2'), type_url: TYPE_URL.cluster });
    await deltaAck(s);
    s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['a', 'b'] });
    const first = await deltaAck(s);
    expect(deltaNames(first)).toEqual(['a', 'b']);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b', 5), cluster('c', 5)] } } });
    const cds = await deltaAck(s);
    expect(cds.type_url).toBe(TYPE_URL.cluster);
    expect(deltaNames(cds)).toEqual(['b', 'c']);
    const eds = await deltaAck(s);
    expect(eds.type_url).toBe(TYPE_URL.endpoint);
    expect(eds.resources.map((r) => [r.name, r.version])).toEqual([['b', first.resources.find((r) => r.name === 'b')?.version]]);
    expect(await nothingPending(s, false)).toBe(TYPE_URL.route);
  });
});

describe('resource warming on a delta reconnect (initial_resource_versions)', () => {
  /** Connects, takes CDS and the CLAs of a and b, and returns what the client holds; then b's Cluster changes. */
  async function holdThenChange(id: string) {
    const s = openDelta(h.client());
    s.send({ node: envoyNode(id), type_url: TYPE_URL.cluster });
    const cds = await deltaAck(s);
    s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['a', 'b'] });
    const eds = await deltaAck(s);
    s.close();
    const held = (r: typeof cds) => Object.fromEntries(r.resources.map((x) => [x.name, x.version]));
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b', 5)] } } });
    return { clusters: held(cds), endpoints: held(eds) };
  }

  for (const order of ['EDS request before the CDS response', 'EDS request after the CDS response'] as const) {
    it(`a Cluster that changed while the client was away gets its unchanged CLA again (${order})`, async () => {
      h = await startHarness(base());
      const held = await holdThenChange(order.includes('before') ? 'w3' : 'w4');
      const s = openDelta(h.client());
      s.send({ node: envoyNode('w5'), type_url: TYPE_URL.cluster, initial_resource_versions: held.clusters });
      const eds = { type_url: TYPE_URL.endpoint, resource_names_subscribe: ['a', 'b'], initial_resource_versions: held.endpoints };
      if (order.includes('before')) s.send(eds);
      const cds = await deltaAck(s);
      expect(cds.type_url).toBe(TYPE_URL.cluster);
      expect(deltaNames(cds)).toEqual(['b']);
      if (order.includes('after')) s.send(eds);
      const cla = await deltaAck(s);
      expect(cla.type_url).toBe(TYPE_URL.endpoint);
      expect(cla.resources.map((r) => [r.name, r.version])).toEqual([['b', held.endpoints.b]]);
      expect(await nothingPending(s, false)).toBe(TYPE_URL.route);
    });
  }
});

describe('routes wait for the endpoints of new clusters (spec "routes are not warmed")', () => {
  it('delta: a client that never asks for the new CLA still gets the routes, after a bounded wait', async () => {
    h = await startHarness(base());
    const s = await deltaSubscribedToAll('n1');
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('d')] }, [TYPE_URL.endpoint]: { put: [endpoints('d', '10.0.0.4')] }, [TYPE_URL.route]: { put: [route('outbound/default', 'd')] } } });
    expect(deltaNames(await deltaAck(s))).toEqual(['d']);
    const rds = await deltaAck(s); // held for AWAIT_ENDPOINTS_MS, then sent
    expect([rds.type_url, deltaNames(rds)]).toEqual([TYPE_URL.route, ['outbound/default']]);
  });

  it('delta: a CLA never asked for holds the routes 2 s from its cluster, however many clusters follow', { timeout: 15_000 }, async () => {
    h = await startHarness(base());
    const s = await deltaSubscribedToAll('n3');
    const t0 = performance.now();
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('x')] }, [TYPE_URL.route]: { put: [route('outbound/default', 'b')] } } });
    expect(deltaNames(await deltaAck(s))).toEqual(['x']); // the client never subscribes to x's endpoints
    // More clusters keep coming, each subscribed and answered at once, as Envoy does.
    let routesAt: number | undefined;
    for (let i = 1; i <= 5 && routesAt === undefined; i++) {
      await new Promise((r) => setTimeout(r, 800));
      h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster(`d${i}`)] }, [TYPE_URL.endpoint]: { put: [endpoints(`d${i}`, `10.0.1.${i}`)] } } });
      for (;;) {
        const r = await deltaAck(s);
        if (r.type_url === TYPE_URL.route) routesAt ??= performance.now() - t0;
        if (r.type_url === TYPE_URL.cluster) s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: [`d${i}`] });
        if (r.type_url === TYPE_URL.endpoint) break;
      }
    }
    expect(routesAt).toBeDefined();
    expect(routesAt).toBeLessThan(4000); // 2 s after x, not pushed on by d1, d2, ... (which would be 5.2 s and more)
  });

  it('SotW and delta: with a wildcard EDS subscription the new CLA goes right after CDS, and the routes with it', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('n2'), type_url: TYPE_URL.cluster });
    s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['*'] });
    s.send({ type_url: TYPE_URL.route, resource_names_subscribe: ['outbound/default'] });
    for (let i = 0; i < 3; i++) await deltaAck(s);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('d')] }, [TYPE_URL.endpoint]: { put: [endpoints('d', '10.0.0.4')] }, [TYPE_URL.route]: { put: [route('outbound/default', 'd')] } } });
    const order = [await deltaAck(s), await deltaAck(s), await deltaAck(s)].map((r) => r.type_url);
    expect(order).toEqual([TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.route]);
  });
});

describe('delta subscriptions (spec "Subscribing to Resources", "Unsubscribing from Resources")', () => {
  it('answers a re-subscription to a name the client holds with the resource (the client may have forgotten it)', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('r1'), type_url: TYPE_URL.endpoint, resource_names_subscribe: ['a'] });
    const first = await deltaAck(s);
    expect(deltaNames(first)).toEqual(['a']);
    s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['a', 'b'] });
    const again = await deltaAck(s);
    expect(deltaNames(again)).toEqual(['a', 'b']);
    expect(again.resources.find((r) => r.name === 'a')?.version).toBe(first.resources[0]?.version);
  });

  it('still skips what a resuming client says it holds (initial_resource_versions)', async () => {
    h = await startHarness(base());
    const version = h.cache.current().scopes.get(SCOPE)?.get(TYPE_URL.endpoint)?.get('a')?.version ?? '';
    const s = openDelta(h.client());
    s.send({
      node: envoyNode('r2'),
      type_url: TYPE_URL.endpoint,
      resource_names_subscribe: ['a', 'b'],
      initial_resource_versions: { a: version },
    });
    expect(deltaNames(await deltaAck(s))).toEqual(['b']);
  });

  it('with "*" and a name, unsubscribing the name is answered: resources if "*" covers it, else removed_resources', async () => {
    h = await startHarness(base());
    const s = openDelta(h.client());
    s.send({ node: envoyNode('r3'), type_url: TYPE_URL.cluster, resource_names_subscribe: ['*', 'b', 'not-a-cluster'] });
    const first = await deltaAck(s);
    expect(deltaNames(first)).toEqual(['a', 'b', 'c']);
    expect(first.removed_resources).toEqual(['not-a-cluster']);
    s.send({ type_url: TYPE_URL.cluster, resource_names_unsubscribe: ['b'] });
    const kept = await deltaAck(s);
    expect(deltaNames(kept)).toEqual(['b']);
    expect(kept.removed_resources).toEqual([]);
    s.send({ type_url: TYPE_URL.cluster, resource_names_unsubscribe: ['not-a-cluster'] });
    const gone = await deltaAck(s);
    expect(gone.resources).toEqual([]);
    expect(gone.removed_resources).toEqual(['not-a-cluster']);
    // Without "*", unsubscribing needs no answer.
    s.send({ type_url: TYPE_URL.cluster, resource_names_subscribe: ['a'] });
    expect(deltaNames(await deltaAck(s))).toEqual(['a']);
    s.send({ type_url: TYPE_URL.cluster, resource_names_unsubscribe: ['*'] });
    s.send({ type_url: TYPE_URL.cluster, resource_names_unsubscribe: ['a'] });
    expect(await nothingPending(s, false)).toBe(TYPE_URL.route);
  });
});

describe('SotW "*" (spec "How the client specifies what resources to return")', () => {
  it('a request that only adds or drops "*" changes the subscription, whatever other streams sent', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('s1'), type_url: TYPE_URL.cluster, resource_names: ['a'] });
    expect(resourceNames(await sotwAck(s, { [TYPE_URL.cluster]: ['*', 'a'] }))).toEqual(['a']);
    expect(resourceNames(await sotwAck(s, { [TYPE_URL.cluster]: ['a'] }))).toEqual(['a', 'b', 'c']);
    expect(resourceNames(await sotwAck(s, { [TYPE_URL.cluster]: ['a'] }))).toEqual(['a']);
    // Another stream whose names were first seen with "*" by the one above: adding "*" is answered too.
    const t = openSotw(h.client());
    t.send({ node: envoyNode('s2'), type_url: TYPE_URL.cluster, resource_names: ['*', 'a'] });
    expect(resourceNames(await sotwAck(t, { [TYPE_URL.cluster]: ['a'] }))).toEqual(['a', 'b', 'c']);
    expect(resourceNames(await sotwAck(t, { [TYPE_URL.cluster]: ['*', 'a'] }))).toEqual(['a']);
    expect(resourceNames(await sotwAck(t, { [TYPE_URL.cluster]: ['*', 'a'] }))).toEqual(['a', 'b', 'c']);
    // A plain ACK is still not answered.
    expect(await nothingPending(t, true)).toBe(TYPE_URL.route);
  });

  it('[] after an explicit ["*"] unsubscribes from everything; [] from the start stays the legacy wildcard', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('s3'), type_url: TYPE_URL.cluster, resource_names: ['*'] });
    expect(resourceNames(await sotwAck(s, { [TYPE_URL.cluster]: [] }))).toEqual(['a', 'b', 'c']);
    const none = await sotwAck(s, { [TYPE_URL.cluster]: [] });
    expect(none.type_url).toBe(TYPE_URL.cluster);
    expect(none.resources).toEqual([]);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('d')] } } });
    expect(await nothingPending(s, true)).toBe(TYPE_URL.route);

    const legacy = openSotw(h.client());
    legacy.send({ node: envoyNode('s4'), type_url: TYPE_URL.cluster });
    expect(resourceNames(await sotwAck(legacy))).toEqual(['a', 'b', 'c', 'd']);
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('e')] } } });
    expect(resourceNames(await sotwAck(legacy))).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(await nothingPending(legacy, true)).toBe(TYPE_URL.route);
  });
});

describe('make-before-break (spec "Eventual consistency considerations")', () => {
  /** A port rename: cluster a goes, d comes, and the route moves from a to d, in one publish. */
  const rename = () => ({
    [SCOPE]: {
      [TYPE_URL.cluster]: { put: [cluster('d')], remove: ['a'] },
      [TYPE_URL.endpoint]: { put: [endpoints('d', '10.0.0.4')], remove: ['a'] },
      [TYPE_URL.route]: { put: [route('outbound/default', 'd')] },
    },
  });

  it('SotW: a removed cluster stays in CDS until the proxy has ACKed the routes that no longer use it', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    const subscribed = { [TYPE_URL.endpoint]: ['a', 'b'], [TYPE_URL.route]: ['outbound/default'] };
    s.send({ node: envoyNode('m1'), type_url: TYPE_URL.cluster });
    s.send({ type_url: TYPE_URL.endpoint, resource_names: subscribed[TYPE_URL.endpoint] });
    s.send({ type_url: TYPE_URL.listener });
    s.send({ type_url: TYPE_URL.route, resource_names: subscribed[TYPE_URL.route] });
    const last = new Map<string, { version_info: string; nonce: string }>();
    for (let i = 0; i < 4; i++) {
      const r = await sotwAck(s, subscribed);
      last.set(r.type_url, r);
    }
    h.cache.publish(rename());
    const cds = await sotwAck(s, subscribed);
    expect(cds.type_url).toBe(TYPE_URL.cluster);
    expect(resourceNames(cds)).toEqual(['a', 'b', 'c', 'd']);
    // The client asks for d's endpoints (a new cluster) and gets them; only then the route table, which moved to d
    // (a route to a cluster still warming would fail).
    subscribed[TYPE_URL.endpoint] = ['a', 'b', 'd'];
    const lastEds = last.get(TYPE_URL.endpoint);
    s.send({ type_url: TYPE_URL.endpoint, version_info: lastEds?.version_info, response_nonce: lastEds?.nonce, resource_names: subscribed[TYPE_URL.endpoint] });
    const eds = await sotwAck(s, subscribed);
    expect(eds.type_url).toBe(TYPE_URL.endpoint);
    expect(resourceNames(eds)).toEqual(['d']);
    const rds = await s.next();
    expect(rds.type_url).toBe(TYPE_URL.route);
    // A listener exchange (a new subscription, answered and ACKed) lets nothing go: the route table is not ACKed.
    const lastLds = last.get(TYPE_URL.listener);
    s.send({ type_url: TYPE_URL.listener, version_info: lastLds?.version_info, response_nonce: lastLds?.nonce, resource_names: ['virtualOutbound'] });
    expect((await sotwAck(s, { [TYPE_URL.listener]: ['virtualOutbound'] })).type_url).toBe(TYPE_URL.listener);
    // The ACK of the route table lets a go.
    s.send({ type_url: TYPE_URL.route, version_info: rds.version_info, response_nonce: rds.nonce, resource_names: subscribed[TYPE_URL.route] });
    const after = await s.next();
    expect(after.type_url).toBe(TYPE_URL.cluster);
    expect(resourceNames(after)).toEqual(['b', 'c', 'd']);
  });

  it('a publish that only removes a cluster (a Service deleted, its virtual host with it) drops it at once', async () => {
    h = await startHarness(base());
    h.cache.publish({ [SCOPE]: { [TYPE_URL.route]: { put: [routeTable('outbound/default', { a: ['a'], b: ['b'] })] } } });
    const { s } = await sotwSubscribedToAll('m3');
    h.cache.publish({
      [SCOPE]: {
        [TYPE_URL.cluster]: { remove: ['a'] },
        [TYPE_URL.endpoint]: { remove: ['a'] },
        [TYPE_URL.route]: { put: [routeTable('outbound/default', { b: ['b'] })] },
      },
    });
    const cds = await s.next();
    expect(cds.type_url).toBe(TYPE_URL.cluster);
    expect(resourceNames(cds)).toEqual(['b', 'c']);
    expect((await s.next()).type_url).toBe(TYPE_URL.route);
  });

  for (const mode of ['SotW', 'delta'] as const) {
    it(`${mode}: a removed cluster that a staying virtual host named (a canary's weighted route) goes after the route ACK`, async () => {
      h = await startHarness(base());
      h.cache.publish({ [SCOPE]: { [TYPE_URL.route]: { put: [routeTable('outbound/default', { web: ['a', 'b'], b: ['b'] })] } } });
      const removal = {
        [SCOPE]: {
          [TYPE_URL.cluster]: { remove: ['a'] },
          [TYPE_URL.endpoint]: { remove: ['a'] },
          [TYPE_URL.route]: { put: [routeTable('outbound/default', { web: ['b'], b: ['b'] })] },
        },
      };
      if (mode === 'SotW') {
        const { s, subscribed } = await sotwSubscribedToAll('m4');
        h.cache.publish(removal);
        // The route table goes first (the clusters did not change for the proxy yet), then CDS without a.
        expect((await sotwAck(s, subscribed)).type_url).toBe(TYPE_URL.route);
        const cds = await sotwAck(s, { ...subscribed, [TYPE_URL.endpoint]: ['b'] });
        expect([cds.type_url, resourceNames(cds)]).toEqual([TYPE_URL.cluster, ['b', 'c']]);
      } else {
        const s = await deltaSubscribedToAll('m5');
        h.cache.publish(removal);
        expect((await deltaAck(s)).type_url).toBe(TYPE_URL.route);
        const after = [await deltaAck(s), await deltaAck(s)];
        expect(after.map((r) => [r.type_url, r.resources.length, r.removed_resources])).toEqual([
          [TYPE_URL.cluster, 0, ['a']],
          [TYPE_URL.endpoint, 0, ['a']],
        ]);
      }
    });
  }

  it('delta: a route table naming a new cluster waits for its CLA, and the renamed cluster goes after the route ACK', async () => {
    h = await startHarness(base());
    const s = await deltaSubscribedToAll('m2');
    h.cache.publish(rename());
    const cds = await deltaAck(s);
    expect([cds.type_url, deltaNames(cds), cds.removed_resources]).toEqual([TYPE_URL.cluster, ['d'], []]);
    s.send({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['d'] }); // as Envoy does for a new EDS cluster
    const eds = await deltaAck(s);
    expect([eds.type_url, deltaNames(eds)]).toEqual([TYPE_URL.endpoint, ['d']]);
    const rds = await s.next();
    expect(rds.type_url).toBe(TYPE_URL.route);
    s.send({ type_url: TYPE_URL.route, response_nonce: rds.nonce });
    const removal = [await deltaAck(s), await deltaAck(s)];
    expect(removal.map((r) => [r.type_url, r.resources.length, r.removed_resources])).toEqual([
      [TYPE_URL.cluster, 0, ['a']],
      [TYPE_URL.endpoint, 0, ['a']],
    ]);
  });
});

