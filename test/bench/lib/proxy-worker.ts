// A load-generator process: runs a share of the simulated proxies and answers the benchmark driver over IPC.
import { type ClientKind, type ProxyCounters, SimulatedProxy, type XdsMode, newCounters } from './ads-client.ts';
import { ChangeTracker, type Marker } from './change-tracker.ts';

export interface ProxySpec {
  readonly index: number;
  readonly namespace: string;
}

export type ToWorker =
  | { type: 'start'; address: string; mode: XdsMode; client: ClientKind; vhds: boolean; proxies: ProxySpec[]; maxConnecting: number }
  | { type: 'expect'; id: number; markers: Marker[] }
  | { type: 'collect'; id: number }
  | { type: 'forget'; id: number }
  | { type: 'counters' }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'synced'; count: number }
  | { type: 'expect-ok'; id: number }
  | { type: 'complete'; id: number }
  | { type: 'result'; id: number; receivedAt: number[]; ackedAt: number[] }
  | { type: 'counters'; counters: ProxyCounters }
  | { type: 'error'; slot: number; message: string; total: number };

function send(msg: FromWorker): void {
  process.send?.(msg);
}

let proxies: SimulatedProxy[] = [];
let tracker = new ChangeTracker(0);
const counters = newCounters();
let errorsReported = 0;

function start(msg: Extract<ToWorker, { type: 'start' }>): void {
  tracker = new ChangeTracker(msg.proxies.length);
  tracker.onComplete = (id) => send({ type: 'complete', id });
  let synced = 0;
  let next = 0;
  let syncTimer: NodeJS.Timeout | undefined;
  const launch = () => {
    while (next < proxies.length && next - synced < msg.maxConnecting) proxies[next++]?.start();
  };
  proxies = msg.proxies.map(
    (spec, slot) =>
      new SimulatedProxy({
        address: msg.address,
        mode: msg.mode,
        client: msg.client,
        vhds: msg.vhds,
        slot,
        index: spec.index,
        namespace: spec.namespace,
        tracker,
        counters,
        onSynced: () => {
          synced++;
          launch();
          // Report progress at most every 100 ms, and at once when all are in.
          if (synced === proxies.length) {
            clearTimeout(syncTimer);
            send({ type: 'synced', count: synced });
          } else {
            syncTimer ??= setTimeout(() => {
              syncTimer = undefined;
              send({ type: 'synced', count: synced });
            }, 100);
          }
        },
        onError: (slot, message) => {
          errorsReported++;
          if (errorsReported <= 5 || errorsReported % 100 === 0) {
            send({ type: 'error', slot, message, total: errorsReported });
          }
        },
      }),
  );
  launch();
}

process.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'start':
      start(msg);
      break;
    case 'expect':
      tracker.expect(msg.id, msg.markers);
      send({ type: 'expect-ok', id: msg.id });
      break;
    case 'collect': {
      const r = tracker.result(msg.id);
      send({ type: 'result', id: msg.id, receivedAt: r?.receivedAt ?? [], ackedAt: r?.ackedAt ?? [] });
      break;
    }
    case 'forget':
      tracker.forget(msg.id);
      break;
    case 'counters':
      send({ type: 'counters', counters: { ...counters } });
      break;
    case 'stop':
      for (const p of proxies) p.close();
      setTimeout(() => process.exit(0), 200).unref();
      process.disconnect?.();
      break;
  }
});

// The driver going away ends this process too.
process.on('disconnect', () => {
  for (const p of proxies) p.close();
  setTimeout(() => process.exit(0), 200).unref();
});
