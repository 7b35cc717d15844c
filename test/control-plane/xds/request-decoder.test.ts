// The SotW request framing: same messages as grpc-js' own decoder for any chunking, large ones compacted, buffers reused.
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { pooledBufferStats, releaseBuffer, takeBuffer } from '../../../control-plane/xds/read-buffers.ts';
import { PooledStreamDecoder } from '../../../control-plane/xds/request-decoder.ts';
import { rawNamesOf, withLazyRequestNames } from '../../../control-plane/xds/request-names.ts';
import { grpcDefinitions, TYPE_URL } from '../../../proto/index.ts';
import { envoyNode, openSotw } from './ads-client.ts';
import { endpoints } from './fake-cache.ts';
import { startHarness } from './harness.ts';

type Method = grpc.MethodDefinition<object, object>;
const service = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service as grpc.ServiceDefinition;
const plain = service.StreamAggregatedResources as Method;
const lazy = withLazyRequestNames(service).StreamAggregatedResources as Method;

/** grpc-js' own decoder (not exported from the package root). */
const { StreamDecoder } = (await import('@grpc/grpc-js/build/src/stream-decoder.js')) as {
  StreamDecoder: new (max: number) => { write(data: Buffer): Buffer[] };
};

const manyNames = (n: number, prefix = 'outbound|80||svc') =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}.ns-${i % 7}.svc.cluster.local`);

function frame(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Splits bytes at pseudo-random points (deterministic), as HTTP/2 DATA chunks would. */
function chunks(bytes: Buffer, seed: number): Buffer[] {
  const out: Buffer[] = [];
  let x = seed;
  for (let pos = 0; pos < bytes.length; ) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (x % (x % 3 === 0 ? 7 : 20000));
    out.push(Buffer.from(bytes.subarray(pos, pos + n)));
    pos += n;
  }
  return out;
}

const decoded = (framed: Buffer) => JSON.parse(JSON.stringify(lazy.requestDeserialize(framed.subarray(5))));
const expected = (payload: Buffer) => JSON.parse(JSON.stringify(plain.requestDeserialize(payload)));

describe('PooledStreamDecoder', () => {
  const requests = [
    { type_url: TYPE_URL.cluster, response_nonce: 'n1' },
    { node: envoyNode('a'), type_url: TYPE_URL.endpoint, resource_names: manyNames(1000), version_info: 'v1' },
    { type_url: TYPE_URL.endpoint, resource_names: manyNames(1000), version_info: 'v2', response_nonce: 'n2' },
    { type_url: TYPE_URL.endpoint, resource_names: ['x', 'y'], response_nonce: 'n3' },
    { type_url: TYPE_URL.endpoint, resource_names: manyNames(400, 'other'), response_nonce: 'n4', error_detail: { code: 3, message: 'bad' } },
    {},
  ];
  const payloads = requests.map((r) => plain.requestSerialize(r));
  const stream = Buffer.concat(payloads.map(frame));

  it('reads the same requests as grpc-js for any chunking, with equal raw names for equal lists', () => {
    for (const seed of [1, 2, 3, 42, 1234]) {
      const ours = new PooledStreamDecoder(-1);
      const theirs = new StreamDecoder(-1);
      const got = chunks(stream, seed).flatMap((c) => ours.write(c));
      const want = chunks(stream, seed).flatMap((c) => theirs.write(c));
      expect(got.length).toBe(payloads.length);
      expect(want.length).toBe(payloads.length);
      expect(got.map(decoded)).toEqual(payloads.map(expected));
      // The large requests come out compacted (smaller than their payload), the small ones as they are.
      expect(got[1]!.length).toBeLessThan(want[1]!.length);
      expect(got[0]!.equals(want[0]!)).toBe(true);
      expect(got[5]!.equals(want[5]!)).toBe(true);
    }
    const d = new PooledStreamDecoder(-1);
    const [a, b] = [d.write(frame(payloads[1]!))[0]!, d.write(frame(payloads[2]!))[0]!];
    const [ra, rb] = [rawNamesOf(lazy.requestDeserialize(a.subarray(5))), rawNamesOf(lazy.requestDeserialize(b.subarray(5)))];
    expect(ra).toBeDefined();
    expect(ra?.equals(rb!)).toBe(true);
  });

  it('rejects a message over the limit like grpc-js', () => {
    const big = frame(payloads[1]!);
    expect(() => new PooledStreamDecoder(100).write(big)).toThrow(/^Received message larger than max \(\d+ vs 100\)$/);
    expect(() => new StreamDecoder(100).write(big)).toThrow(/^Received message larger than max \(\d+ vs 100\)$/);
  });

  it('gives its pooled buffers back: reassembling many large requests reuses one buffer', () => {
    const before = pooledBufferStats();
    const d = new PooledStreamDecoder(-1);
    for (let i = 0; i < 20; i++) {
      const [msg] = chunks(frame(payloads[2]!), i).flatMap((c) => d.write(c));
      expect(decoded(msg!)).toEqual(expected(payloads[2]!));
    }
    const after = pooledBufferStats();
    expect(after.reused - before.reused).toBeGreaterThanOrEqual(19);
    expect(after.allocated - before.allocated).toBeLessThanOrEqual(1);
  });

  it('fails a compacted request read through a copy instead of reading it as one for no names', () => {
    const [msg] = new PooledStreamDecoder(-1).write(frame(payloads[2]!));
    expect(() => lazy.requestDeserialize(Buffer.from(msg!.subarray(5)))).toThrow(/compacted request/);
  });
});

describe('pooled read buffers', () => {
  it('a request read from a pooled buffer keeps nothing of it once the buffer is reused', () => {
    // No names: not compacted, so the deserializer reads the pooled bytes themselves and then gives them back.
    const payload = plain.requestSerialize({
      type_url: TYPE_URL.cluster,
      response_nonce: 'n',
      error_detail: { code: 3, message: 'm'.repeat(6000), details: [{ type_url: 't', value: Buffer.alloc(100, 7) }] },
    });
    const framed = takeBuffer(payload.length + 5);
    frame(payload).copy(framed);
    const read = lazy.requestDeserialize(framed.subarray(5));
    const want = expected(payload);
    expect(JSON.parse(JSON.stringify(read))).toEqual(want);
    const again = takeBuffer(payload.length + 5);
    expect(again.buffer).toBe(framed.buffer);
    again.fill(0xee);
    expect(JSON.parse(JSON.stringify(read))).toEqual(want);
    releaseBuffer(again);
  });

  it('gives a buffer back once: a second release does not put it on the free list twice', () => {
    const a = takeBuffer(50_000);
    releaseBuffer(a);
    releaseBuffer(a);
    const b = takeBuffer(50_000);
    const c = takeBuffer(50_000);
    expect(b.buffer).toBe(a.buffer);
    expect(c.buffer).not.toBe(b.buffer);
    releaseBuffer(b);
    releaseBuffer(c);
  });
});

describe('the SotW server call', () => {
  it('reads requests with the pooled decoder (grpc-js internals as expected)', async () => {
    const names = manyNames(500);
    const h = await startHarness({ 'envoy/default': { [TYPE_URL.endpoint]: { put: names.map((n) => endpoints(n, '10.0.0.1')) } } });
    try {
      const before = pooledBufferStats();
      const s = openSotw(h.client());
      s.send({ node: envoyNode('n'), type_url: TYPE_URL.endpoint, resource_names: names });
      const r = await s.next();
      expect(r.resources.length).toBe(500);
      const after = pooledBufferStats();
      expect(after.reused + after.allocated).toBeGreaterThan(before.reused + before.allocated);
    } finally {
      await h.close();
    }
  });
});
