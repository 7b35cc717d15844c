// The sidecar tests' outbound listener: `virtualOutbound` on 0.0.0.0:15001, an HCM whose routes come over ADS.
import { EXTENSION_TYPE_URL, pack } from '../../../proto/index.ts';

/** An ADS config source, as the control plane writes it. */
export const ADS_SOURCE = { ads: {}, resource_api_version: 'V3' };

/** The Listener message (plain object, ready to encode) naming `routeConfigName` for RDS. */
export function outboundListener(routeConfigName: string): Record<string, unknown> {
  return {
    name: 'virtualOutbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: pack(EXTENSION_TYPE_URL.httpConnectionManager, {
              stat_prefix: 'outbound',
              rds: { config_source: ADS_SOURCE, route_config_name: routeConfigName },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: pack(EXTENSION_TYPE_URL.router, {}) }],
            }),
          },
        ],
      },
    ],
  };
}
