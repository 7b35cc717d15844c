// Interop: a real proxyless gRPC client (@grpc/grpc-js-xds) resolves xds:/// through our ADS server and calls a backend.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXTENSION_TYPE_URL, pack, TYPE_URL } from '../../../proto/index.ts';
import { eventually } from './ads-client.ts';
import { resource } from './fake-cache.ts';
import { type Harness, startHarness } from './harness.ts';

const FQDN = 'web.default.svc.cluster.local';
const TARGET = `${FQDN}:80`;
const CLUSTER = `outbound|80||${FQDN}`;

const echo: grpc.ServiceDefinition = {
  Echo: {
    path: '/skein.test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};

function proxylessResources(backendPort: number, lbPolicy = 'ROUND_ROBIN') {
  return {
    [TYPE_URL.listener]: {
      put: [
        resource(TYPE_URL.listener, {
          name: TARGET,
          api_listener: {
            api_listener: pack(EXTENSION_TYPE_URL.httpConnectionManager, {
              stat_prefix: 'proxyless',
              rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: TARGET },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: pack(EXTENSION_TYPE_URL.router, {}) }],
            }),
          },
        }),
      ],
    },
    [TYPE_URL.route]: {
      put: [
        resource(TYPE_URL.route, {
          name: TARGET,
          virtual_hosts: [{ name: TARGET, domains: [TARGET, FQDN], routes: [{ match: { prefix: '/' }, route: { cluster: CLUSTER } }] }],
        }),
      ],
    },
    [TYPE_URL.cluster]: {
      put: [
        resource(TYPE_URL.cluster, {
          name: CLUSTER,
          type: 'EDS',
          lb_policy: lbPolicy,
          connect_timeout: { seconds: 1 },
          eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: CLUSTER },
        }),
      ],
    },
    [TYPE_URL.endpoint]: {
      put: [
        resource(TYPE_URL.endpoint, {
          cluster_name: CLUSTER,
          endpoints: [
            {
              locality: { zone: '' },
              load_balancing_weight: { value: 1 },
              lb_endpoints: [
                { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: backendPort } } }, health_status: 'HEALTHY' },
              ],
            },
          ],
        }),
      ],
    },
  };
}

let h: Harness;
let backend: grpc.Server;
let backendPort: number;

beforeAll(async () => {
  backend = new grpc.Server();
  backend.addService(echo, { Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) });
  backendPort = await new Promise<number>((resolve, reject) =>
    backend.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  h = await startHarness({ proxyless: proxylessResources(backendPort) });
  process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
    xds_servers: [{ server_uri: h.server.address, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: 'proxyless~web-client', locality: {} },
  });
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();
});

afterAll(async () => {
  await h?.close();
  backend?.forceShutdown();
});

describe('proxyless gRPC client (grpc-js-xds)', () => {
  it('gets LDS, RDS, CDS and EDS over SotW ADS, ACKs them, and reaches the backend', async () => {
    const client = new grpc.Client(`xds:///${TARGET}`, grpc.credentials.createInsecure());
    const reply = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest('/skein.test.Echo/Echo', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('ping'), (err, res) =>
        err || !res ? reject(err) : resolve(res),
      ),
    );
    expect(reply.toString()).toBe('ping');
    await eventually(() => {
      const [proxy] = h.status.list();
      expect(proxy?.nodeId).toBe('proxyless~web-client');
      expect(proxy?.scope).toBe('proxyless');
      expect(proxy?.userAgent).toMatch(/^gRPC Node/);
      expect(proxy?.types.map((t) => `${t.type}:${t.state}`)).toEqual(['CDS:SYNCED', 'EDS:SYNCED', 'LDS:SYNCED', 'RDS:SYNCED']);
    });
    // A policy grpc-js-xds does not support is rejected; the status shows the NACK with the client's own words.
    h.cache.publish({ proxyless: { [TYPE_URL.cluster]: proxylessResources(backendPort, 'MAGLEV')[TYPE_URL.cluster] } });
    await eventually(() => {
      const cds = h.status.list()[0]?.types.find((t) => t.type === 'CDS');
      expect(cds?.state).toBe('NACKED');
      expect(cds?.lastNack?.message).toContain('MAGLEV');
      expect(cds?.lastNack?.resourceNames).toEqual([CLUSTER]);
    });
    // The client keeps its last good config and keeps calling.
    const again = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest('/skein.test.Echo/Echo', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('pong'), (err, res) =>
        err || !res ? reject(err) : resolve(res),
      ),
    );
    expect(again.toString()).toBe('pong');
    client.close();
  });
});
