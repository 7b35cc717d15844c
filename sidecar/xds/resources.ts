// Decodes and validates xDS resources of any type the sidecar takes (CDS, EDS, LDS, RDS, VHDS), collecting every error with its field path.
import { nodeCrypto } from '../builtins.ts';
import {
  type Cluster__Output,
  type ClusterLoadAssignment__Output,
  type Listener__Output,
  type RouteConfiguration__Output,
  splitVhdsResourceName,
  TYPE_URL,
  type TypeUrl,
  unpack,
  type VirtualHost__Output,
} from '../../proto/index.ts';
import { type DecodedCluster, decodeCluster } from './clusters.ts';
import { decodeEndpoints } from './endpoints.ts';
import { Problems, quote } from './fields.ts';
import { decodeListener } from './listeners.ts';
import type { EndpointConfig, ListenerConfig, RouteTableConfig, VirtualHostConfig } from './model.ts';
import { decodeRouteConfiguration, decodeVirtualHost } from './routes.ts';

export type { DecodedCluster } from './clusters.ts';
export { clustersOfRoutes } from './routes.ts';

export interface DecodedEndpoints {
  readonly name: string;
  readonly version: string;
  readonly endpoints: readonly EndpointConfig[];
}

/** A VHDS resource `<route configuration name>/<vhost name>`: one virtual host of that route table. */
export interface DecodedVirtualHost {
  readonly routeConfigName: string;
  readonly vhost: VirtualHostConfig;
}

/** What each type URL decodes to. */
export interface DecodedByType {
  [TYPE_URL.cluster]: DecodedCluster;
  [TYPE_URL.endpoint]: DecodedEndpoints;
  [TYPE_URL.listener]: ListenerConfig;
  [TYPE_URL.route]: RouteTableConfig;
  [TYPE_URL.virtualHost]: DecodedVirtualHost;
}

export interface DecodedResource<T extends TypeUrl = TypeUrl> {
  readonly name: string;
  readonly version: string;
  readonly value: DecodedByType[T];
}

export type DecodeResult<T extends TypeUrl = TypeUrl> =
  | { readonly ok: true; readonly resource: DecodedResource<T> }
  | { readonly ok: false; readonly name: string; readonly errors: readonly string[] };

/** Envoy's message names, used to prefix errors: `Cluster "outbound|80||web.default.svc.cluster.local": …`. */
export const KIND_LABEL: Readonly<Record<TypeUrl, string>> = {
  [TYPE_URL.cluster]: 'Cluster',
  [TYPE_URL.endpoint]: 'ClusterLoadAssignment',
  [TYPE_URL.listener]: 'Listener',
  [TYPE_URL.route]: 'RouteConfiguration',
  [TYPE_URL.virtualHost]: 'VirtualHost',
};

/** A content hash of a resource's bytes: the version used when the server gives none (state of the world). */
export function contentVersion(bytes: Uint8Array): string {
  return nodeCrypto.createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

function nameOf(typeUrl: TypeUrl, message: Record<string, unknown>): string {
  const field = typeUrl === TYPE_URL.endpoint ? 'cluster_name' : 'name';
  return typeof message[field] === 'string' ? (message[field] as string) : '';
}

function decodeTyped(typeUrl: TypeUrl, message: unknown, version: string, problems: Problems): unknown {
  switch (typeUrl) {
    case TYPE_URL.cluster:
      return decodeCluster(message as Cluster__Output, version, problems);
    case TYPE_URL.endpoint: {
      const cla = message as ClusterLoadAssignment__Output;
      if (!cla.cluster_name) problems.add('cluster_name', 'is required');
      const endpoints = decodeEndpoints(cla, '', problems);
      return { name: cla.cluster_name, version, endpoints } satisfies DecodedEndpoints;
    }
    case TYPE_URL.listener:
      return decodeListener(message as Listener__Output, version, problems);
    case TYPE_URL.route:
      return decodeRouteConfiguration(message as RouteConfiguration__Output, version, problems);
    case TYPE_URL.virtualHost:
      return undefined; // decodeResource: it needs the resource name
  }
  return undefined;
}

/** A VHDS resource: named `<route configuration name>/<its own name>` (Envoy's naming), validated as a table's vhost is. */
function decodeVhdsResource(message: VirtualHost__Output, resourceName: string | undefined, problems: Problems): DecodedVirtualHost | undefined {
  const split = resourceName === undefined ? undefined : splitVhdsResourceName(resourceName);
  if (resourceName === undefined) problems.add('name', 'a VirtualHost needs its delta resource name (<route configuration name>/<virtual host name>)');
  else if (split === undefined) problems.add('name', `resource name ${quote(resourceName)} is not <route configuration name>/<virtual host name>`);
  else if (message.name !== split.vhostName) problems.add('name', `${quote(message.name)} differs from the resource name's ${quote(split.vhostName)}`);
  const vhost = decodeVirtualHost(message, '', problems);
  return split === undefined ? undefined : { routeConfigName: split.routeConfigName, vhost };
}

/**
 * Unpacks and validates one resource of a response for `typeUrl`. `version` is the delta resource version; when
 * absent the content hash is used. `expectedName` (delta Resource.name) must match the message's own name.
 */
export function decodeResource<T extends TypeUrl>(
  typeUrl: T,
  any: { type_url: string; value: Uint8Array },
  version?: string,
  expectedName?: string,
): DecodeResult<T> {
  const label = KIND_LABEL[typeUrl];
  if (any.type_url !== typeUrl) {
    const name = expectedName ?? '';
    return { ok: false, name, errors: [`${label} ${quote(name)}: type_url ${quote(any.type_url)} does not match ${typeUrl}`] };
  }
  let message: Record<string, unknown>;
  try {
    message = unpack(any);
  } catch (err) {
    const name = expectedName ?? '';
    return { ok: false, name, errors: [`${label} ${quote(name)}: cannot decode: ${(err as Error).message}`] };
  }
  const vhds = typeUrl === TYPE_URL.virtualHost;
  // A VirtualHost is known by its resource name (`<table>/<vhost>`); its message holds only the vhost's part.
  const name = vhds ? (expectedName ?? nameOf(typeUrl, message)) : nameOf(typeUrl, message);
  const problems = new Problems();
  if (!vhds && expectedName !== undefined && expectedName !== name)
    problems.add('name', `${quote(name)} differs from the resource name ${quote(expectedName)}`);
  const value = vhds
    ? decodeVhdsResource(message as unknown as VirtualHost__Output, expectedName, problems)
    : decodeTyped(typeUrl, message, version ?? contentVersion(any.value), problems);
  if (!problems.empty || value === undefined) {
    const errors = problems.list.map((p) => `${label} ${quote(name)}: ${p}`);
    return { ok: false, name, errors: errors.length ? errors : [`${label} ${quote(name)}: invalid`] };
  }
  return { ok: true, resource: { name, version: version ?? contentVersion(any.value), value: value as DecodedByType[T] } };
}

/** The outcome of one response: every valid resource, and every error (a response with any error is rejected). */
export interface DecodedResponse<T extends TypeUrl = TypeUrl> {
  readonly resources: DecodedResource<T>[];
  readonly errors: string[];
}

/** Decodes every resource of a response, adding duplicate-name errors; pairs are (Any, delta version?, delta name?). */
export function decodeResources<T extends TypeUrl>(
  typeUrl: T,
  items: readonly { any: { type_url: string; value: Uint8Array }; version?: string; name?: string }[],
): DecodedResponse<T> {
  const resources: DecodedResource<T>[] = [];
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const result = decodeResource(typeUrl, item.any, item.version, item.name);
    if (!result.ok) {
      errors.push(...result.errors);
      continue;
    }
    if (seen.has(result.resource.name)) {
      errors.push(`${KIND_LABEL[typeUrl]} ${quote(result.resource.name)}: appears twice in one response`);
      continue;
    }
    seen.add(result.resource.name);
    resources.push(result.resource);
  }
  return { resources, errors };
}
