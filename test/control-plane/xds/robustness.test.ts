// Failures stay in their stream: a throwing cache call, malformed or oversized requests; plus scopes that appear later and convergence.
import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import { MAX_STREAMS_PER_CONNECTION } from '../../../control-plane/xds/server.ts';
import { afterEach, describe, expect, it } from 'vitest';
import { messageRoot, TYPE_URL } from '../../../proto/index.ts';
import { envoyNode, eventually, openDelta, openSotw } from './ads-client.ts';
import { cluster, endpoints } from './fake-cache.ts';
import { type Harness, startHarness } from './harness.ts';

const SCOPE = 'envoy/default';
let h: Harness;
afterEach(async () => {
  await h?.close();
});

const base = () => ({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('a')] }, [TYPE_URL.endpoint]: { put: [endpoints('a', '10.0.0.1')] } } });

describe('stream isolation', () => {
  it('ends only the stream whose handling threw, with INTERNAL, and logs its node id', async () => {
    h = await startHarness(base());
    const defaultScope = h.cache.scopeFor;
    h.cache.scopeFor = (node) => {
      if (node.id === 'boom') throw new Error('scope lookup exploded');
      return defaultScope(node);
    };
    const good = openSotw(h.client());
    good.send({ node: envoyNode('good'), type_url: TYPE_URL.cluster });
    await good.next();
    const bad = openSotw(h.client());
    bad.send({ node: envoyNode('boom'), type_url: TYPE_URL.cluster });
    const st = await bad.ended();
    expect(st.code).toBe(grpc.status.INTERNAL);
    expect(st.details).toContain('scope lookup exploded');
    expect(h.logs.find((l) => l.fields.nodeId === 'boom')).toMatchObject({ level: 'error', fields: { code: 'INTERNAL' } });
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b')] } } });
    expect((await good.next()).resources).toHaveLength(2);
  });

  /** A raw ADS call that writes bytes as they are (a serializer that passes Buffers through). */
  function rawCall(method: 'StreamAggregatedResources' | 'DeltaAggregatedResources') {
    const raw = new grpc.Client(h.server.address, grpc.credentials.createInsecure());
    const call = raw.makeBidiStreamRequest(`/envoy.service.discovery.v3.AggregatedDiscoveryService/${method}`, (b: Buffer) => b, (b: Buffer) => b);
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => {});
    call.on('data', () => {});
    return { call, status, close: () => raw.close() };
  }
  const encodeRequest = (req: object, type = 'envoy.service.discovery.v3.DiscoveryRequest'): Buffer => {
    const t = messageRoot().lookupType(type);
    return Buffer.from(t.encode(t.fromObject(req)).finish());
  };
  const rejected = async (reason: string): Promise<number> => {
    const text = await h.server.metrics.registry.metrics();
    return Number(new RegExp(`skein_xds_rejected_requests_total\\{reason="${reason}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  };

  it('ends a stream that sends malformed protobuf with INVALID_ARGUMENT, logs it with the peer, and serves the others', async () => {
    h = await startHarness(base());
    const good = openDelta(h.client());
    good.send({ node: envoyNode('good'), type_url: TYPE_URL.cluster });
    await good.next();
    const { call, status, close } = rawCall('StreamAggregatedResources');
    // Field 2 (node) claims 5 bytes and carries 1.
    call.write(Buffer.from([0x12, 0x05, 0x0a]));
    const st = await status;
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.details).toMatch(/^malformed request: a 3-byte message that is not a valid DiscoveryRequest \(.+\)$/);
    const line = h.logs.filter((l) => l.message === 'xDS request rejected; closing the stream');
    expect(line).toHaveLength(1);
    expect(line[0]).toMatchObject({ level: 'warn', fields: { nodeId: '(not sent yet)', code: 'INVALID_ARGUMENT', reason: st.details } });
    expect(String(line[0]?.fields.peer)).toMatch(/^(127\.0\.0\.1|\[?::ffff:127\.0\.0\.1\]?):\d+$/);
    expect(await rejected('malformed')).toBe(1);
    close();
    h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b')] } } });
    expect((await good.next()).resources.map((r) => r.name)).toEqual(['b']);
  });

  it('names the node of a stream whose later request is malformed, and releases the stream', async () => {
    h = await startHarness(base());
    const { call, status, close } = rawCall('DeltaAggregatedResources');
    call.write(encodeRequest({ node: { id: 'sidecar~10.0.0.7~web-0.default~default.svc.cluster.local' }, type_url: TYPE_URL.cluster }, 'envoy.service.discovery.v3.DeltaDiscoveryRequest'));
    await eventually(() => expect(h.server.streams()).toBe(1));
    call.write(Buffer.from([0x0a, 0x09, 0x61])); // type_url claims 9 bytes, carries 1
    const st = await status;
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.details).toContain('not a valid DeltaDiscoveryRequest');
    expect(h.logs.find((l) => l.message === 'xDS request rejected; closing the stream')?.fields.nodeId).toBe('sidecar~10.0.0.7~web-0.default~default.svc.cluster.local');
    await eventually(() => expect(h.server.streams()).toBe(0));
    expect(h.cache.released).toEqual([SCOPE]);
    close();
  });

  it.each(['StreamAggregatedResources', 'DeltaAggregatedResources'] as const)(
    'ends a %s stream that sends an 8.7 MB request with RESOURCE_EXHAUSTED naming the limit, logged once, others served',
    async (method) => {
      h = await startHarness(base());
      const good = openSotw(h.client());
      good.send({ node: envoyNode('good'), type_url: TYPE_URL.cluster });
      await good.next();
      const { call, status, close } = rawCall(method);
      const type = method === 'StreamAggregatedResources' ? 'DiscoveryRequest' : 'DeltaDiscoveryRequest';
      call.write(encodeRequest({ node: { id: 'big' }, type_url: TYPE_URL.cluster }, `envoy.service.discovery.v3.${type}`));
      await eventually(() => expect(h.server.streams()).toBe(2));
      // A SotW request naming 310 000 resources (8.7 MB); the limit is grpc-js' default receive size, 4 MiB.
      const names = Array.from({ length: 310_000 }, (_, i) => `outbound|80||svc-${String(i).padStart(6, '0')}.ns`);
      const big = encodeRequest(method === 'StreamAggregatedResources' ? { type_url: TYPE_URL.cluster, resource_names: names } : { type_url: TYPE_URL.cluster, resource_names_subscribe: names }, `envoy.service.discovery.v3.${type}`);
      expect(big.length).toBeGreaterThan(8_500_000);
      call.write(big);
      const st = await status;
      expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(st.details).toBe(`${type} of ${big.length} bytes is over the control plane's limit of 4194304 bytes (grpc.max_receive_message_length)`);
      const lines = h.logs.filter((l) => l.message === 'xDS request rejected; closing the stream');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 'warn', fields: { nodeId: 'big', code: 'RESOURCE_EXHAUSTED', reason: st.details } });
      expect(await rejected('too_large')).toBe(1);
      await eventually(() => expect(h.server.streams()).toBe(1));
      close();
      h.cache.publish({ [SCOPE]: { [TYPE_URL.cluster]: { put: [cluster('b')] } } });
      expect((await good.next()).resources).toHaveLength(2); // SotW: the whole set, a and b
    },
  );
});

describe('scopes and convergence', () => {
  it('sends a whole scope that appears in a later snapshot', async () => {
    h = await startHarness(base());
    h.cache.scopeFor = () => 'envoy/late';
    const s = openDelta(h.client());
    s.send({ node: envoyNode('late'), type_url: TYPE_URL.cluster });
    const empty = await s.next();
    expect(empty.resources).toEqual([]);
    s.send({ type_url: TYPE_URL.cluster, response_nonce: empty.nonce });
    h.cache.publish({ 'envoy/late': { [TYPE_URL.cluster]: { put: [cluster('x'), cluster('y')] } } });
    expect((await s.next()).resources.map((r) => r.name).sort()).toEqual(['x', 'y']);
  });

  it('releases its scope when a stream ends, however it ends', async () => {
    h = await startHarness(base());
    const a = openSotw(h.client());
    a.send({ node: envoyNode('a'), type_url: TYPE_URL.cluster });
    await a.next();
    const b = openDelta(h.client());
    b.send({ node: envoyNode('b'), type_url: TYPE_URL.cluster });
    await b.next();
    const c = openSotw(h.client());
    c.send({ type_url: TYPE_URL.cluster }); // no node: never got a scope, so releases none
    await c.ended();
    expect(h.cache.released).toEqual([]);
    a.close();
    await eventually(() => expect(h.cache.released).toEqual([SCOPE]));
    b.call.end();
    await eventually(() => expect(h.cache.released).toEqual([SCOPE, SCOPE]));
  });

  it('observes convergence from snapshot.changedAt to the ACK of the push', async () => {
    h = await startHarness(base());
    const s = openSotw(h.client());
    s.send({ node: envoyNode('c'), type_url: TYPE_URL.endpoint, resource_names: ['a'] });
    const first = await s.next();
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['a'], response_nonce: first.nonce, version_info: first.version_info });
    const histogram = h.server.metrics.registry.getSingleMetric('skein_xds_push_convergence_seconds');
    const count = async () => (await histogram?.get())?.values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count'))?.value ?? 0;
    await eventually(() => expect(h.status.list()[0]?.types[0]?.state).toBe('SYNCED'));
    expect(await count()).toBe(0); // the initial answer is not a change
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [endpoints('a', '10.3.3.3')] } } });
    const pushed = await s.next();
    s.send({ type_url: TYPE_URL.endpoint, resource_names: ['a'], response_nonce: pushed.nonce, version_info: pushed.version_info });
    await eventually(async () => expect(await count()).toBe(1));
  });
});

describe('streams per connection', () => {
  it('advertises at most 100 concurrent streams per HTTP/2 connection (one client cannot open thousands)', async () => {
    h = await startHarness(base());
    const session = http2.connect(`http://${h.server.address}`);
    session.on('error', () => {});
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
      expect(settings.maxConcurrentStreams).toBe(MAX_STREAMS_PER_CONNECTION);
      expect(MAX_STREAMS_PER_CONNECTION).toBe(100);
    } finally {
      session.close();
    }
  });
});
