// A node's per-type streams (CDS, EDS, LDS, RDS services without ADS), so one stream can wait for another's progress.
import { TYPE_URL, type TypeUrl } from '../../proto/index.ts';

/** How long after a CDS stream resumed its node's new EDS streams still count as part of that reconnect. */
const WARMING_MS = 30_000;

/** What NodeStreams needs from a per-type stream. */
export interface PerTypeStream {
  readonly nodeId: string;
  readonly scope: string | undefined;
  readonly only: TypeUrl | undefined;
  /** CDS: nothing waits to be sent and every response sent was ACKed or NACKed (the proxy has applied it). */
  clustersSettled(): boolean;
  /** EDS: sends the ClusterLoadAssignments held back for changed Clusters (see AdsStreamBase.holdResends). */
  releaseEndpoints(): void;
  /** EDS: sends these ClusterLoadAssignments again, even at the version the client holds, once the node's CDS is settled. */
  warmEndpoints(names: readonly string[]): void;
}

/**
 * Per node id, its open per-type streams. Envoy without ADS gets Clusters and ClusterLoadAssignments on separate
 * streams (often one EDS stream per cluster), and finishes warming an updated Cluster only on a CLA that arrives
 * after it: HTTP/2 does not keep the order of frames across streams, so an EDS stream holds such a CLA back until
 * the node's CDS streams here have had their responses answered (Envoy ACKs CDS after creating the new Cluster and
 * its EDS watch).
 */
export class NodeStreams {
  private readonly byNode = new Map<string, Set<PerTypeStream>>();
  /**
   * Per node id, the CLA names of Clusters a delta CDS stream sent updated on resuming (initial_resource_versions
   * older than the current ones): the node's EDS streams, open or opening later, send them again (Envoy finishes
   * warming an updated Cluster only on a new CLA response). Dropped with the node's last stream, and no longer given
   * WARMING_MS after the resume (an EDS stream opened later is a new subscription, not the reconnect's).
   */
  private readonly warming = new Map<string, { readonly scope: string | undefined; readonly names: Set<string>; until: number }>();

  /** Adds a stream; true when it is the node's first. */
  add(stream: PerTypeStream): boolean {
    let set = this.byNode.get(stream.nodeId);
    const first = set === undefined;
    if (!set) this.byNode.set(stream.nodeId, (set = new Set()));
    set.add(stream);
    return first;
  }

  /** Removes a stream; true when it was the node's last. */
  remove(stream: PerTypeStream): boolean {
    const set = this.byNode.get(stream.nodeId);
    if (!set?.delete(stream)) return false;
    if (set.size > 0) return false;
    this.byNode.delete(stream.nodeId);
    this.warming.delete(stream.nodeId);
    return true;
  }

  /** A delta CDS stream resumed with Clusters the client held at older versions: their CLAs (`names`) go again. */
  clustersUpdatedOnResume(cds: PerTypeStream, names: readonly string[]): void {
    const set = this.byNode.get(cds.nodeId);
    if (!set || names.length === 0) return;
    let warming = this.warming.get(cds.nodeId);
    if (!warming || warming.scope !== cds.scope) this.warming.set(cds.nodeId, (warming = { scope: cds.scope, names: new Set(), until: 0 }));
    warming.until = Date.now() + WARMING_MS;
    for (const name of names) warming.names.add(name);
    for (const s of set) if (s.only === TYPE_URL.endpoint && s.scope === cds.scope) s.warmEndpoints(names);
  }

  /** For an EDS stream's first request: the CLA names its node's resumed CDS streams left warming. */
  warmingFor(eds: PerTypeStream): readonly string[] {
    const warming = this.warming.get(eds.nodeId);
    if (!warming || warming.scope !== eds.scope || Date.now() > warming.until) return [];
    return [...warming.names];
  }

  /** Whether every CDS stream of the stream's node and scope is settled (true when it has none here). */
  clustersSettled(stream: PerTypeStream): boolean {
    const set = this.byNode.get(stream.nodeId);
    if (!set) return true;
    for (const s of set) if (s.only === TYPE_URL.cluster && s.scope === stream.scope && !s.clustersSettled()) return false;
    return true;
  }

  /** A CDS stream of the node settled or ended: its EDS streams send what they held back, once all CDS streams are settled. */
  clustersAnswered(nodeId: string, scope: string | undefined): void {
    const set = this.byNode.get(nodeId);
    if (!set) return;
    let settled = true;
    for (const s of set) if (s.only === TYPE_URL.cluster && s.scope === scope && !s.clustersSettled()) settled = false;
    if (!settled) return;
    for (const s of set) if (s.only === TYPE_URL.endpoint && s.scope === scope) s.releaseEndpoints();
  }
}
