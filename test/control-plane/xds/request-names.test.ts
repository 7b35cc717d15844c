// The lazy SotW request reader: the same request as grpc-js' own decoding, with the raw resource_names bytes kept.
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { compactNames, findNamesRun, rawNamesOf, stableRun, withLazyRequestNames } from '../../../control-plane/xds/request-names.ts';
import { grpcDefinitions, TYPE_URL } from '../../../proto/index.ts';

type Method = grpc.MethodDefinition<object, object>;

const service = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service as grpc.ServiceDefinition;
const plain = service.StreamAggregatedResources as Method;
const lazy = withLazyRequestNames(service).StreamAggregatedResources as Method;

describe('withLazyRequestNames', () => {
  it('decodes like the plain reader and keeps equal raw bytes for equal name lists', () => {
    const request = {
      version_info: 'v1',
      node: { id: 'n1', cluster: 'c' },
      resource_names: ['outbound|80||a.default.svc.cluster.local', 'outbound|80||b.default.svc.cluster.local'],
      type_url: TYPE_URL.endpoint,
      response_nonce: 'abc',
    };
    const bytes = plain.requestSerialize(request);
    const read = lazy.requestDeserialize(bytes);
    expect(JSON.parse(JSON.stringify(read))).toEqual(JSON.parse(JSON.stringify(plain.requestDeserialize(bytes))));
    const again = lazy.requestDeserialize(plain.requestSerialize({ ...request, response_nonce: 'def' }));
    expect(rawNamesOf(again)?.equals(rawNamesOf(read)!)).toBe(true);
    const other = lazy.requestDeserialize(plain.requestSerialize({ ...request, resource_names: ['x'] }));
    expect(rawNamesOf(other)?.equals(rawNamesOf(read)!)).toBe(false);
    expect((other as { resource_names: string[] }).resource_names).toEqual(['x']);
  });

  it('reads a request without names as usual', () => {
    const bytes = plain.requestSerialize({ type_url: TYPE_URL.cluster, response_nonce: 'n' });
    const read = lazy.requestDeserialize(bytes) as { resource_names: string[] };
    expect(rawNamesOf(read)).toBeUndefined();
    expect(read.resource_names).toEqual([]);
  });

  it('reads a request whose names are not one run, or that is malformed, the usual way', () => {
    const head = plain.requestSerialize({ resource_names: ['a'] });
    const mid = plain.requestSerialize({ type_url: TYPE_URL.endpoint });
    const tail = plain.requestSerialize({ resource_names: ['b'] });
    const split = Buffer.concat([head, mid, tail]);
    expect(findNamesRun(split, 3)).toBeNull();
    const read = lazy.requestDeserialize(split) as { resource_names: string[]; type_url: string };
    expect(rawNamesOf(read)).toBeUndefined();
    expect(read.resource_names).toEqual(['a', 'b']);
    expect(read.type_url).toBe(TYPE_URL.endpoint);
    const truncated = plain.requestSerialize({ resource_names: ['abc'], type_url: TYPE_URL.endpoint }).subarray(0, 4);
    expect(findNamesRun(truncated, 3)).toBeNull();
    const outcome = (read: () => object) => {
      try {
        return JSON.stringify(read());
      } catch (err) {
        return `threw ${(err as Error).message}`;
      }
    };
    for (const bad of [truncated, Buffer.from([0x1a, 0x05, 0x61]), Buffer.from([0x1f, 0x00])]) {
      expect(outcome(() => lazy.requestDeserialize(bad))).toBe(outcome(() => plain.requestDeserialize(bad)));
    }
  });
});

describe('findNamesRun', () => {
  const serialize = (r: object) => plain.requestSerialize(r);
  const names = Array.from({ length: 300 }, (_, i) => `outbound|80||s${i}.default.svc.cluster.local`);

  it('finds the one run of resource_names entries, or none', () => {
    const bytes = serialize({ version_info: 'v', resource_names: names, type_url: TYPE_URL.endpoint, response_nonce: 'n' });
    const run = findNamesRun(bytes, 3);
    const only = serialize({ resource_names: names });
    expect(run).toMatchObject({ known: undefined });
    expect(bytes.subarray(run!.first, run!.end).equals(only)).toBe(true);
    expect(findNamesRun(serialize({ type_url: TYPE_URL.endpoint, version_info: 'v' }), 3)).toBeUndefined();
  });

  it('steps over a recent run in one comparison, and not when the names go on past it', () => {
    const run = stableRun(serialize({ resource_names: names }));
    const bytes = serialize({ version_info: 'v', resource_names: names, response_nonce: 'n' });
    const found = findNamesRun(bytes, 3);
    expect(found?.known).toBe(run);
    expect(found!.end - found!.first).toBe(run.length);
    const longer = serialize({ version_info: 'v', resource_names: [...names, 'one-more'], response_nonce: 'n' });
    const more = findNamesRun(longer, 3);
    expect(more?.known).toBeUndefined();
    expect(more!.end - more!.first).toBeGreaterThan(run.length);
    const read = lazy.requestDeserialize(longer) as { resource_names: string[] };
    expect(read.resource_names).toEqual([...names, 'one-more']);
  });

  it("checks a stream's own last runs first: a subscription pushed out of the shared recent list is still known", () => {
    const framed = (r: object) => {
      const payload = serialize(r);
      const head = Buffer.alloc(5);
      head.writeUInt32BE(payload.length, 1);
      return Buffer.concat([head, payload]);
    };
    const own: Buffer[] = [];
    const request = { type_url: TYPE_URL.endpoint, resource_names: names.map((n) => `own-${n}`), response_nonce: 'a' };
    const first = compactNames(framed(request), own);
    expect(first).toBeDefined();
    expect(own.length).toBe(1);
    const ownRun = own[0]!;
    // 40 other subscriptions go through the shared list (it keeps 32).
    for (let i = 0; i < 40; i++) stableRun(serialize({ resource_names: [`other-${i}`, ...names] }));
    const again = compactNames(framed({ ...request, response_nonce: 'b' }), own);
    expect(again!.length).toBe(first!.length);
    expect(own).toEqual([ownRun]);
    expect(own[0]).toBe(ownRun);
    const read = lazy.requestDeserialize(again!.subarray(5)) as { resource_names: string[]; response_nonce: string };
    expect(rawNamesOf(read)).toBe(ownRun);
    expect(read.resource_names).toEqual(request.resource_names);
    expect(read.response_nonce).toBe('b');
  });
});

