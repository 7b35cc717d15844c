// The shared-bytes ADS serializer: responses with pre-encoded resources decode to exactly what grpc-js would send.
import { describe, expect, it } from 'vitest';
import { grpcDefinitions, TYPE_URL } from '../../../proto/index.ts';
import type * as grpc from '@grpc/grpc-js';
import {
  encodeDeltaResources,
  encodeSotwResources,
  withEncodedResources,
  withSharedEncoding,
} from '../../../control-plane/xds/encode.ts';
import { cluster, endpoints } from './fake-cache.ts';

type Method = grpc.MethodDefinition<object, object>;

describe('withSharedEncoding', () => {
  const service = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service as grpc.ServiceDefinition;
  const fast = withSharedEncoding(service);
  const sotw = fast.StreamAggregatedResources as Method;
  const delta = fast.DeltaAggregatedResources as Method;
  const plainSotw = service.StreamAggregatedResources as Method;
  const plainDelta = service.DeltaAggregatedResources as Method;

  it('writes a SotW response with shared resource bytes that decodes like the plain one', () => {
    const rs = [endpoints('a', '10.0.0.1'), endpoints('b', '10.0.0.2', '10.0.0.3')];
    const anys = rs.map((r) => r.any);
    const response = { version_info: 'v1', resources: anys, type_url: TYPE_URL.endpoint, nonce: 'n1' };
    const bytes = sotw.responseSerialize(withEncodedResources({ ...response }, encodeSotwResources(anys)));
    expect(sotw.responseDeserialize(bytes)).toEqual(plainSotw.responseDeserialize(plainSotw.responseSerialize(response)));
    expect(bytes.length).toBe(plainSotw.responseSerialize(response).length);
    // The same resource encodes to the same shared bytes every time.
    expect(encodeSotwResources([anys[0]!])[0]).toBe(encodeSotwResources([anys[0]!])[0]);
  });

  it('writes a delta response with shared resource bytes that decodes like the plain one', () => {
    const rs = [cluster('a'), cluster('b', 3)];
    const response = {
      system_version_info: '7',
      resources: rs.map((r) => ({ name: r.name, version: r.version, resource: r.any })),
      type_url: TYPE_URL.cluster,
      nonce: 'n2',
      removed_resources: ['gone'],
    };
    const bytes = delta.responseSerialize(withEncodedResources({ ...response }, encodeDeltaResources(rs)));
    expect(delta.responseDeserialize(bytes)).toEqual(plainDelta.responseDeserialize(plainDelta.responseSerialize(response)));
  });

  it('serializes a response without pre-encoded resources as before', () => {
    const response = { version_info: 'v', resources: [cluster('c').any], type_url: TYPE_URL.cluster, nonce: 'x' };
    expect(sotw.responseSerialize(response).equals(plainSotw.responseSerialize(response))).toBe(true);
  });
});
