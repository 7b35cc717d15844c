// Tracks, per simulated proxy, when it first ACKed an EDS response holding each expected endpoint change.

/** One expected change: the new IP `ip` must appear in the ClusterLoadAssignment named `cluster`. */
export interface Marker {
  readonly cluster: string;
  readonly ip: string;
}

export interface Expectation {
  readonly id: number;
  readonly markers: readonly Marker[];
  /** The IP as it sits in the encoded CLA: a length byte then the bytes (SocketAddress.address is a string field). */
  readonly patterns: readonly Buffer[];
  /** Per marker, per proxy slot: 1 once seen. */
  readonly seen: Uint8Array[];
  /** Per proxy slot: how many markers it has seen. */
  readonly seenCount: Uint16Array;
  /** Per proxy slot: monotonic ms of the response that completed the set (received), and of the ACK written. */
  readonly receivedAt: Float64Array;
  readonly ackedAt: Float64Array;
  done: number;
}

/** Monotonic milliseconds, comparable across the processes of one machine (CLOCK_MONOTONIC). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export interface ExpectationResult {
  readonly id: number;
  /** Per proxy slot, NaN where the change was not seen. */
  readonly receivedAt: number[];
  readonly ackedAt: number[];
}

/**
 * Shared by every proxy of one worker: proxies report the EDS resources they receive (name + bytes) and, after
 * writing the ACK, commit the pending hits with the ACK's time.
 */
export class ChangeTracker {
  private readonly slots: number;
  private readonly byId = new Map<number, Expectation>();
  /** cluster name → expectations with a marker there (index of the marker). */
  private readonly byCluster = new Map<string, { exp: Expectation; marker: number }[]>();
  /** Called when every proxy has seen every marker of an expectation. */
  onComplete: ((id: number) => void) | undefined;

  constructor(slots: number) {
    this.slots = slots;
  }

  get pendingClusters(): number {
    return this.byCluster.size;
  }

  expect(id: number, markers: readonly Marker[]): void {
    const exp: Expectation = {
      id,
      markers,
      patterns: markers.map((m) => Buffer.concat([Buffer.from([m.ip.length]), Buffer.from(m.ip, 'latin1')])),
      seen: markers.map(() => new Uint8Array(this.slots)),
      seenCount: new Uint16Array(this.slots),
      receivedAt: new Float64Array(this.slots).fill(Number.NaN),
      ackedAt: new Float64Array(this.slots).fill(Number.NaN),
      done: 0,
    };
    this.byId.set(id, exp);
    markers.forEach((m, i) => {
      const list = this.byCluster.get(m.cluster) ?? [];
      list.push({ exp, marker: i });
      this.byCluster.set(m.cluster, list);
    });
  }

  /**
   * Looks at one received ClusterLoadAssignment; returns the expectations it completes for this proxy (to be
   * committed with `acked` once the ACK is written). Cheap when no change is expected in that cluster.
   */
  inspect(slot: number, cluster: string, bytes: Uint8Array, receivedAt: number, out: Expectation[]): void {
    const list = this.byCluster.get(cluster);
    if (!list) return;
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const { exp, marker } of list) {
      const seen = exp.seen[marker] as Uint8Array;
      if (seen[slot]) continue;
      if (buf.indexOf(exp.patterns[marker] as Buffer) < 0) continue;
      seen[slot] = 1;
      exp.seenCount[slot] = (exp.seenCount[slot] as number) + 1;
      if (exp.seenCount[slot] === exp.markers.length) {
        exp.receivedAt[slot] = receivedAt;
        out.push(exp);
      }
    }
  }

  /** Records the ACK time for the expectations `inspect` completed. */
  acked(slot: number, completed: readonly Expectation[], at: number): void {
    for (const exp of completed) {
      exp.ackedAt[slot] = at;
      exp.done++;
      if (exp.done === this.slots) this.onComplete?.(exp.id);
    }
  }

  result(id: number): ExpectationResult | undefined {
    const exp = this.byId.get(id);
    if (!exp) return undefined;
    return { id, receivedAt: Array.from(exp.receivedAt), ackedAt: Array.from(exp.ackedAt) };
  }

  forget(id: number): void {
    const exp = this.byId.get(id);
    if (!exp) return;
    this.byId.delete(id);
    for (const m of exp.markers) {
      const list = (this.byCluster.get(m.cluster) ?? []).filter((e) => e.exp !== exp);
      if (list.length) this.byCluster.set(m.cluster, list);
      else this.byCluster.delete(m.cluster);
    }
  }
}
