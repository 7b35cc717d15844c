// Test helpers: a real grpc-js ADS client built from Skein's proto definitions, with awaitable responses.
import * as grpc from '@grpc/grpc-js';
import {
  type AggregatedDiscoveryServiceClient,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse__Output,
  type DiscoveryRequest,
  type DiscoveryResponse__Output,
  grpcDefinitions,
  type Node,
  unpack,
} from '../../../proto/index.ts';

export function adsClient(address: string): AggregatedDiscoveryServiceClient {
  const Ctor = grpcDefinitions().envoy.service.discovery.v3.AggregatedDiscoveryService;
  return new Ctor(address, grpc.credentials.createInsecure());
}

/** A per-type service's methods as a test calls them (Envoy without ADS: CDS, EDS, LDS, RDS each on its own streams). */
export interface PerTypeClient {
  readonly client: grpc.Client;
  openSotw(): SotwReader;
  openDelta(): DeltaReader;
  fetch(req: DiscoveryRequest): Promise<DiscoveryResponse__Output>;
}

const PER_TYPE = {
  cluster: ['ClusterDiscoveryService', 'Clusters'],
  endpoint: ['EndpointDiscoveryService', 'Endpoints'],
  listener: ['ListenerDiscoveryService', 'Listeners'],
  route: ['RouteDiscoveryService', 'Routes'],
} as const;

type StreamMethod<Req, Res> = () => grpc.ClientDuplexStream<Req, Res>;
type UnaryMethod = (req: DiscoveryRequest, cb: (err: grpc.ServiceError | null, res?: DiscoveryResponse__Output) => void) => void;

/** A client of envoy.service.<kind>.v3.<Kind>DiscoveryService, built from Skein's proto definitions (on `channel` if given). */
export function perTypeClient(address: string, kind: keyof typeof PER_TYPE, channel?: ReturnType<grpc.Client['getChannel']>): PerTypeClient {
  const [service, suffix] = PER_TYPE[kind];
  const Ctor = (grpcDefinitions().envoy.service[kind].v3 as unknown as Record<string, new (a: string, c: grpc.ChannelCredentials, o?: grpc.ClientOptions) => grpc.Client>)[service];
  if (!Ctor) throw new Error(`no ${service} in the proto definitions`);
  // channelOverride: several services' streams on one HTTP/2 connection, as Envoy's config sources naming one cluster.
  const client = new Ctor(address, grpc.credentials.createInsecure(), channel ? { channelOverride: channel as grpc.ClientOptions['channelOverride'] } : {});
  const methods = client as unknown as Record<string, unknown>;
  const method = <F>(name: string): F => (methods[name] as F & { bind(c: unknown): F }).bind(client);
  return {
    client,
    openSotw: () => new Reader(method<StreamMethod<DiscoveryRequest, DiscoveryResponse__Output>>(`Stream${suffix}`)()),
    openDelta: () => new Reader(method<StreamMethod<DeltaDiscoveryRequest, DeltaDiscoveryResponse__Output>>(`Delta${suffix}`)()),
    fetch: (req) =>
      new Promise((resolve, reject) =>
        method<UnaryMethod>(`Fetch${suffix}`)(req, (err, res) => (err || !res ? reject(err ?? new Error('no response')) : resolve(res))),
      ),
  };
}

/** The names of a SotW response's resources (a ClusterLoadAssignment's is its cluster_name), in order. */
export const resourceNames = (r: { resources: { type_url: string; value: Buffer }[] }): (string | undefined)[] =>
  r.resources.map((any) => {
    const m = unpack<{ name?: string; cluster_name?: string }>(any);
    return m.name || m.cluster_name;
  });

export const envoyNode = (id: string): Node => ({ id, user_agent_name: 'envoy', user_agent_version: '1.30.0' });

/** Queues what a call receives so tests can await the next message or the final status in order. */
export class Reader<Req, Res> {
  readonly call: grpc.ClientDuplexStream<Req, Res>;
  private readonly queue: Res[] = [];
  private waiters: Array<() => void> = [];
  status: grpc.StatusObject | undefined;

  constructor(call: grpc.ClientDuplexStream<Req, Res>) {
    this.call = call;
    call.on('data', (m: Res) => {
      this.queue.push(m);
      this.wake();
    });
    call.on('status', (s: grpc.StatusObject) => {
      this.status = s;
      this.wake();
    });
    call.on('error', () => {
      /* the status event carries the code */
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async until(cond: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(req: Req): void {
    this.call.write(req);
  }

  async next(timeoutMs = 5000): Promise<Res> {
    await this.until(() => this.queue.length > 0 || this.status !== undefined, 'a response', timeoutMs);
    const m = this.queue.shift();
    if (m === undefined) throw new Error(`stream ended with ${this.status?.code}: ${this.status?.details}`);
    return m;
  }

  async ended(timeoutMs = 5000): Promise<grpc.StatusObject> {
    await this.until(() => this.status !== undefined, 'the stream status', timeoutMs);
    return this.status as grpc.StatusObject;
  }

  get buffered(): number {
    return this.queue.length;
  }

  close(): void {
    this.call.cancel();
  }
}

export type SotwReader = Reader<DiscoveryRequest, DiscoveryResponse__Output>;
export type DeltaReader = Reader<DeltaDiscoveryRequest, DeltaDiscoveryResponse__Output>;

export const openSotw = (client: AggregatedDiscoveryServiceClient): SotwReader =>
  new Reader(client.StreamAggregatedResources());
export const openDelta = (client: AggregatedDiscoveryServiceClient): DeltaReader =>
  new Reader(client.DeltaAggregatedResources());

/** Polls a condition (status bookkeeping happens when requests arrive, after the client wrote them). */
export async function eventually(check: () => void | Promise<void>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
