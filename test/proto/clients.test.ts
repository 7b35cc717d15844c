// grpc-js service definitions built from the protobufjs root: same paths, stream kinds and conversion as proto-loader's.
import { describe, expect, it } from 'vitest';
import { grpcDefinitions, serviceDefinition, TYPE_URL } from '../../proto/index.ts';

describe('serviceDefinition', () => {
  const ads = serviceDefinition('envoy.service.discovery.v3.AggregatedDiscoveryService');

  it('has the ADS methods with the paths and stream kinds @grpc/proto-loader gives', () => {
    const reference = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service;
    expect(Object.keys(ads).sort()).toEqual(Object.keys(reference).sort());
    for (const [name, m] of Object.entries(ads)) {
      const r = reference[name as keyof typeof reference];
      if (r === undefined) throw new Error(`proto-loader has no ${name}`);
      expect({ path: m.path, req: m.requestStream, res: m.responseStream }).toEqual({ path: r.path, req: r.requestStream, res: r.responseStream });
    }
  });

  it('encodes and decodes like proto-loader (snake_case, enums as names, defaults filled)', () => {
    const reference = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService.service.DeltaAggregatedResources;
    const m = ads.DeltaAggregatedResources;
    if (m === undefined) throw new Error('no DeltaAggregatedResources');
    const request = { type_url: TYPE_URL.cluster, resource_names_subscribe: ['*'], node: { id: 'sidecar~1', cluster: 'c' } };
    const bytes = m.requestSerialize(request);
    expect(Buffer.compare(bytes, reference.requestSerialize(request))).toBe(0);
    expect(m.requestDeserialize(bytes)).toEqual(reference.requestDeserialize(bytes));
    const response = { type_url: TYPE_URL.cluster, nonce: 'n1', system_version_info: 'v1', removed_resources: ['gone'] };
    const out = ads.DeltaAggregatedResources?.responseSerialize(response) as Buffer;
    expect(m.responseDeserialize(out)).toEqual(reference.responseDeserialize(out));
    expect(m.responseDeserialize(out)).toMatchObject({ nonce: 'n1', removed_resources: ['gone'], resources: [] });
  });

  it('names the CA service', () => {
    expect(serviceDefinition('skein.ca.v1.CertificateService').CreateCertificate?.path).toBe('/skein.ca.v1.CertificateService/CreateCertificate');
  });
});
