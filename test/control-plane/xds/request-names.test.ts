// The lazy SotW request reader: the same request as grpc-js' own decoding, with the raw resource_names bytes kept.
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { rawNamesOf, withLazyRequestNames } from '../../../control-plane/xds/request-names.ts';
import { grpcDefinitions, TYPE_URL } from '../../../proto/index.ts';

type Method = grpc.MethodDefinition<object, object>;

describe('withLazyRequestNames', () => {
  const service = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service as grpc.ServiceDefinition;
  const plain = service.StreamAggregatedResources as Method;
  const lazy = withLazyRequestNames(service).StreamAggregatedResources as Method;

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
});
