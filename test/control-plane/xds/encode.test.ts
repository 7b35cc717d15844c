// The shared-bytes ADS serializer: responses with pre-encoded resources decode to exactly what grpc-js would send.
import { describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions, TYPE_URL } from '../../../proto/index.ts';
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

  it('writes string fields by hand into exactly the bytes protobufjs writes (field order, empty and non-ASCII strings)', () => {
    const rs = [cluster('a'), cluster('b', 3)];
    const resources = rs.map((r) => ({ name: r.name, version: r.version, resource: r.any }));
    const deltas = [
      { system_version_info: '7', resources, type_url: TYPE_URL.cluster, nonce: 'n2', removed_resources: ['gone', 'é-ü'] },
      { system_version_info: '', resources: [], type_url: TYPE_URL.endpoint, nonce: 'x'.repeat(200), removed_resources: [] },
      { resources, type_url: TYPE_URL.cluster, nonce: 'n3' },
    ];
    for (const response of deltas) {
      const carried = response.resources.length > 0 ? encodeDeltaResources(rs) : [];
      const bytes = delta.responseSerialize(withEncodedResources({ ...response }, carried));
      expect(bytes.equals(plainDelta.responseSerialize(response))).toBe(true);
    }
    const anys = [endpoints('a', '10.0.0.1'), endpoints('b', '10.0.0.2')].map((r) => r.any);
    const sotwResponse = { version_info: 'v-ä', resources: anys, type_url: TYPE_URL.endpoint, nonce: 'n4' };
    const bytes = sotw.responseSerialize(withEncodedResources({ ...sotwResponse }, encodeSotwResources(anys)));
    expect(bytes.equals(plainSotw.responseSerialize(sotwResponse))).toBe(true);
  });

  it('falls back to protobufjs for the other fields when a response has one that is not a string', () => {
    const anys = [endpoints('a', '10.0.0.1')].map((r) => r.any);
    const response = {
      version_info: 'v',
      resources: anys,
      type_url: TYPE_URL.endpoint,
      nonce: 'n',
      control_plane: { identifier: 'skein-test' },
    };
    const bytes = sotw.responseSerialize(withEncodedResources({ ...response }, encodeSotwResources(anys)));
    const decoded = sotw.responseDeserialize(bytes) as { control_plane: { identifier: string } | null };
    expect(decoded.control_plane?.identifier).toBe('skein-test');
    expect(decoded).toEqual(plainSotw.responseDeserialize(plainSotw.responseSerialize(response)));
  });

  it('serializes a response without pre-encoded resources as before', () => {
    const response = { version_info: 'v', resources: [cluster('c').any], type_url: TYPE_URL.cluster, nonce: 'x' };
    expect(sotw.responseSerialize(response).equals(plainSotw.responseSerialize(response))).toBe(true);
  });

  it('delivers responses intact through a real grpc-js server and client, queued and on concurrent streams', async () => {
    // Responses are assembled in one reused buffer: this holds only because grpc-js copies the serializer's output
    // before anything else is serialized. Three streams each get twenty responses (five of a few hundred bytes,
    // fifteen of 66–150 KiB) written at once (they queue and are serialized as each stream drains, interleaved across
    // streams); each must arrive as written.
    const server = new grpc.Server();
    const batch = (tag: string, i: number) => {
      const n = i % 4 === 0 ? 1 + (i % 3) : 600 + 40 * ((i * 7) % 20);
      return Array.from({ length: n }, (_, k) => endpoints(`${tag}${i}-${k}`, `10.${i}.${k >> 8}.${k & 255}`));
    };
    const response = (tag: string, i: number) => {
      const anys = batch(tag, i).map((r) => r.any);
      return { version_info: `v${i}`, resources: anys, type_url: TYPE_URL.endpoint, nonce: `${tag}${i}` };
    };
    server.addService(fast, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<{ response_nonce: string }, object>) => {
        call.once('data', (request: { response_nonce: string }) => {
          for (let i = 0; i < 20; i++) {
            const r = response(request.response_nonce, i);
            call.write(withEncodedResources(r, encodeSotwResources(r.resources)));
          }
          call.end();
        });
      },
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<object, object>) => call.end(),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    type Response = { nonce: string; resources: { value: Buffer }[] };
    const Client = grpc.makeGenericClientConstructor(service, 'ADS');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
      StreamAggregatedResources(): grpc.ClientDuplexStream<object, Response>;
      close(): void;
    };
    const receive = async (tag: string): Promise<Response[]> => {
      const call = client.StreamAggregatedResources();
      const got: Response[] = [];
      call.on('data', (m: Response) => got.push(m));
      call.write({ type_url: TYPE_URL.endpoint, response_nonce: tag });
      await new Promise<void>((resolve, reject) => {
        call.on('end', resolve);
        call.on('error', reject);
      });
      return got;
    };
    try {
      const tags = ['a', 'b', 'c'];
      const all = await Promise.all(tags.map(receive));
      tags.forEach((tag, t) => {
        const got = all[t] as Response[];
        expect(got.map((m) => m.nonce)).toEqual(Array.from({ length: 20 }, (_, i) => `${tag}${i}`));
        got.forEach((m, i) => {
          const plain = plainSotw.responseDeserialize(plainSotw.responseSerialize(response(tag, i))) as Response;
          expect(m.resources.length).toBe(plain.resources.length);
          m.resources.forEach((r, k) => expect(Buffer.compare(r.value, plain.resources[k]!.value), `${tag}: response ${i}, resource ${k}`).toBe(0));
        });
      });
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});
