// The sidecar's SotW client against Skein's real xDS server: EDS/RDS responses are incremental, CDS/LDS the whole state.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { TYPE_URL } from '../../../proto/index.ts';
import { ADS_SOURCE, outboundListener } from './listener-fixture.ts';
import { XdsClient } from '../../../sidecar/xds/client.ts';
import { createXdsMetrics } from '../../../sidecar/xds/metrics.ts';
import type { MeshConfig } from '../../../sidecar/xds/model.ts';
import { buildNode } from '../../../sidecar/xds/node.ts';
import { resource } from '../../control-plane/xds/fake-cache.ts';
import { type Harness, startHarness } from '../../control-plane/xds/harness.ts';

const SCOPE = 'envoy/default';
const WEB = 'outbound|80||web.default.svc.cluster.local';
const API = 'outbound|8080||api.default.svc.cluster.local';
const ROUTES = 'outbound/default';

const cluster = (name: string) =>
  resource(TYPE_URL.cluster, {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS_SOURCE, service_name: name },
    connect_timeout: { seconds: 1 },
  });
const cla = (name: string, ...ips: string[]) =>
  resource(TYPE_URL.endpoint, {
    cluster_name: name,
    endpoints: [
      {
        load_balancing_weight: { value: 1 },
        lb_endpoints: ips.map((ip) => ({
          endpoint: { address: { socket_address: { address: ip, port_value: 8080 } } },
          health_status: 'HEALTHY',
        })),
      },
    ],
  });
const listener = resource(TYPE_URL.listener, outboundListener(ROUTES));
const routes = (...clusters: string[]) =>
  resource(TYPE_URL.route, {
    name: ROUTES,
    virtual_hosts: clusters.map((c, i) => ({ name: `vh${i}`, domains: [`host${i}:80`], routes: [{ match: { prefix: '/' }, route: { cluster: c } }] })),
  });

const node = buildNode({
  ip: '10.1.2.3',
  pod: 'web-0',
  namespace: 'default',
  serviceAccount: 'web',
  inboundPort: 15006,
  clusterDomain: 'cluster.local',
  version: '0.1.0',
});

let h: Harness | undefined;
let client: XdsClient | undefined;
afterEach(async () => {
  client?.stop();
  await h?.close();
});

const ips = (mesh: MeshConfig, name: string) => mesh.clusters.get(name)?.endpoints.map((e) => e.address);

describe('sidecar SotW client with incremental EDS', () => {
  it('keeps assignments a response leaves out, and drops one when its cluster leaves CDS', async () => {
    h = await startHarness({
      [SCOPE]: {
        [TYPE_URL.cluster]: { put: [cluster(WEB), cluster(API)] },
        [TYPE_URL.endpoint]: { put: [cla(WEB, '10.0.0.1'), cla(API, '10.0.0.2')] },
        [TYPE_URL.listener]: { put: [listener] },
        [TYPE_URL.route]: { put: [routes(WEB, API)] },
      },
    });
    const configs: MeshConfig[] = [];
    client = new XdsClient({
      server: h.server.address,
      node,
      protocol: 'sotw',
      backoff: { baseMs: 20, capMs: 100 },
      metrics: createXdsMetrics(new Registry()),
      onConfig: (mesh) => configs.push(mesh),
    });
    client.start();
    const until = async (cond: (m: MeshConfig) => boolean): Promise<MeshConfig> => {
      const end = Date.now() + 5000;
      for (;;) {
        const last = configs.at(-1);
        if (last && cond(last)) return last;
        if (Date.now() > end) throw new Error(`no matching MeshConfig (${configs.length} seen)`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await until((m) => ips(m, WEB)?.length === 1 && ips(m, API)?.length === 1);

    // The server sends only API's new assignment; WEB's must stay.
    h.cache.publish({ [SCOPE]: { [TYPE_URL.endpoint]: { put: [cla(API, '10.0.0.3')] } } });
    const changed = await until((m) => ips(m, API)?.[0] === '10.0.0.3');
    expect(ips(changed, WEB)).toEqual(['10.0.0.1']);

    // API leaves CDS (and the routes): its assignment goes with it although no EDS response said so.
    h.cache.publish({
      [SCOPE]: { [TYPE_URL.cluster]: { remove: [API] }, [TYPE_URL.route]: { put: [routes(WEB)] } },
    });
    const gone = await until((m) => !m.clusters.has(API));
    expect(ips(gone, WEB)).toEqual(['10.0.0.1']);
    await until(() => client?.state().connected === true);
  });
});
