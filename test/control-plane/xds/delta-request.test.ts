// The delta ACK reader: the same request objects as grpc-js' own decoding, for ACKs and for everything it hands on.
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { withFastDeltaAcks } from '../../../control-plane/xds/delta-request.ts';
import { grpcDefinitions, TYPE_URL } from '../../../proto/index.ts';

type Method = grpc.MethodDefinition<object, object>;

const service = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service as grpc.ServiceDefinition;
const plain = service.DeltaAggregatedResources as Method;
const fast = withFastDeltaAcks(service).DeltaAggregatedResources as Method;

describe('withFastDeltaAcks', () => {
  it('reads ACKs into the same objects as protobufjs, with fresh arrays and maps each time', () => {
    const requests = [
      { type_url: TYPE_URL.endpoint, response_nonce: 'abc-1f' },
      { type_url: TYPE_URL.cluster, response_nonce: 'ñoncé-✓' },
      { type_url: TYPE_URL.route, response_nonce: 'x'.repeat(300) },
      { type_url: TYPE_URL.listener },
      { response_nonce: 'only-a-nonce' },
      {},
    ];
    for (const request of requests) {
      const bytes = plain.requestSerialize(request);
      expect(fast.requestDeserialize(bytes)).toStrictEqual(plain.requestDeserialize(bytes));
    }
    const bytes = plain.requestSerialize(requests[0]!);
    const a = fast.requestDeserialize(bytes) as { resource_names_subscribe: string[]; initial_resource_versions: object };
    const b = fast.requestDeserialize(bytes) as { resource_names_subscribe: string[]; initial_resource_versions: object };
    expect(a.resource_names_subscribe).not.toBe(b.resource_names_subscribe);
    expect(a.initial_resource_versions).not.toBe(b.initial_resource_versions);
  });

  it('hands every other request to protobufjs: node, subscriptions, versions, NACKs', () => {
    const requests = [
      { node: { id: 'n1', cluster: 'c' }, type_url: TYPE_URL.cluster, resource_names_subscribe: ['*'] },
      { type_url: TYPE_URL.endpoint, response_nonce: 'n', resource_names_subscribe: ['a'], resource_names_unsubscribe: ['b'] },
      { type_url: TYPE_URL.endpoint, initial_resource_versions: { a: '1', b: '2' } },
      { type_url: TYPE_URL.endpoint, response_nonce: 'n', error_detail: { code: 3, message: 'bad endpoint' } },
    ];
    for (const request of requests) {
      const bytes = plain.requestSerialize(request);
      expect(fast.requestDeserialize(bytes)).toStrictEqual(plain.requestDeserialize(bytes));
    }
    const nack = fast.requestDeserialize(plain.requestSerialize(requests[3]!)) as { error_detail: { message: string } | null };
    expect(nack.error_detail?.message).toBe('bad endpoint');
  });

  it('reads a repeated field as protobufjs does (the last wins) and truncated bytes as protobufjs does', () => {
    const first = plain.requestSerialize({ type_url: TYPE_URL.endpoint, response_nonce: 'first' });
    const second = plain.requestSerialize({ response_nonce: 'second' });
    const both = Buffer.concat([first, second]);
    expect(fast.requestDeserialize(both)).toStrictEqual(plain.requestDeserialize(both));
    expect((fast.requestDeserialize(both) as { response_nonce: string }).response_nonce).toBe('second');
    // Truncated bytes: whatever protobufjs makes of them (it reads a cut string short rather than throwing).
    const truncated = first.subarray(0, first.length - 2);
    expect(fast.requestDeserialize(truncated)).toStrictEqual(plain.requestDeserialize(truncated));
  });
});
