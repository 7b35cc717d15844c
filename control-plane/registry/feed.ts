// One client-node informer with its restart bookkeeping, for the Kubernetes registry (CRD feeds also probe and renew).
import { type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject, makeInformer } from '@kubernetes/client-node';
import type { PolicyKind, SkeinPolicy } from './registry.ts';

export interface PolicyStore {
  readonly kind: PolicyKind;
  readonly objects: Map<string, SkeinPolicy>;
}

export type ListFn = () => Promise<KubernetesListObject<KubernetesObject>>;

/** One informer with its own restart backoff; `synced` resolves after its first successful list was applied. */
export class Feed {
  readonly name: string;
  informer: Informer<KubernetesObject>;
  readonly synced: Promise<void>;
  readonly list: ListFn;
  /** Set for custom resources: a 404 on list means the CRD is not installed (empty, looked for again later). */
  readonly crd: { readonly kind: PolicyKind; readonly store: PolicyStore; readonly namespace: string | undefined } | undefined;
  /** A list result the next informer start uses instead of listing again (CRD feeds list once to probe). */
  primed: KubernetesListObject<KubernetesObject> | undefined;
  missing = false;
  private markSynced!: () => void;
  private readonly create: () => Informer<KubernetesObject>;
  isSynced = false;
  attempts = 0;
  timer: NodeJS.Timeout | undefined;

  constructor(kc: KubeConfig, name: string, path: string, list: ListFn, crd?: Feed['crd']) {
    this.name = name;
    this.list = list;
    this.crd = crd;
    this.synced = new Promise((resolve) => (this.markSynced = resolve));
    const listed = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const primed = this.primed;
      this.primed = undefined;
      const result = primed ?? (await list());
      this.attempts = 0;
      // The informer applies the items right after this promise settles; the state is built on a later tick.
      if (!this.isSynced) setImmediate(() => this.setSynced());
      return result;
    };
    this.create = () => makeInformer(kc, path, listed);
    this.informer = this.create();
  }

  setSynced(): void {
    if (this.isSynced) return;
    this.isSynced = true;
    this.markSynced();
  }

  /** A fresh informer (no remembered objects or resourceVersion): it lists before it watches. */
  async renew(): Promise<Informer<KubernetesObject>> {
    await this.informer.stop();
    this.informer = this.create();
    return this.informer;
  }
}

export function isNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; statusCode?: unknown } | undefined;
  return e?.code === 404 || e?.statusCode === 404;
}
