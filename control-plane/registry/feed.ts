// One client-node informer with its restart bookkeeping, for the Kubernetes registry (CRD feeds also probe and renew).
import { type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject, makeInformer } from '@kubernetes/client-node';
import type { PolicyKind, SkeinPolicy } from './registry.ts';

export interface PolicyStore {
  readonly kind: PolicyKind;
  readonly objects: Map<string, SkeinPolicy>;
}

/** One list request: `limit` items from `_continue` on (client-node's names for the API's `limit` and `continue`). */
export interface ListPage {
  readonly limit?: number;
  readonly _continue?: string;
}
export type ListFn = (page: ListPage) => Promise<KubernetesListObject<KubernetesObject>>;
type List = KubernetesListObject<KubernetesObject>;

/** client-go's page size for an informer's initial list. */
export const DEFAULT_LIST_PAGE_SIZE = 500;

/**
 * Lists in pages of `limit` and returns them as one list, as client-go's pager does: the pages are one consistent
 * snapshot (the API server reads them at one revision), the API server never builds one huge response, and each
 * page is decoded on its own turn of the event loop, so health checks are answered between pages. A continue token
 * that expired (410, the list took longer than the server keeps its snapshot) falls back to one full list.
 */
export async function listPaged(list: ListFn, limit: number): Promise<List> {
  if (!(limit > 0)) return list({});
  const items: KubernetesObject[] = [];
  let first: List | undefined;
  let token: string | undefined;
  do {
    let page: List;
    try {
      page = await list(token === undefined ? { limit } : { limit, _continue: token });
    } catch (err) {
      if (token === undefined || !isExpired(err)) throw err;
      return list({});
    }
    first ??= page;
    for (const item of page.items ?? []) items.push(item);
    // Typed lists decode `continue` as `_continue`; custom objects come back as plain JSON.
    const meta = page.metadata as { _continue?: string; continue?: string } | undefined;
    token = meta?._continue || meta?.continue || undefined;
  } while (token !== undefined);
  return { ...first, metadata: { resourceVersion: first.metadata?.resourceVersion ?? '' }, items };
}

/** One informer with its own restart backoff; `synced` resolves after its first successful list was applied. */
export class Feed {
  readonly name: string;
  informer: Informer<KubernetesObject>;
  readonly synced: Promise<void>;
  readonly list: () => Promise<List>;
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

  /** `list` is called once per page of `pageSize` items (0: unpaginated); `this.list` returns them as one list. */
  constructor(kc: KubeConfig, name: string, path: string, list: ListFn, pageSize: number, crd?: Feed['crd']) {
    this.name = name;
    this.list = () => listPaged(list, pageSize);
    this.crd = crd;
    this.synced = new Promise((resolve) => (this.markSynced = resolve));
    const listed = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const primed = this.primed;
      this.primed = undefined;
      const result = primed ?? (await this.list());
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

function isExpired(err: unknown): boolean {
  const e = err as { code?: unknown; statusCode?: unknown } | undefined;
  return e?.code === 410 || e?.statusCode === 410;
}

export function isNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; statusCode?: unknown } | undefined;
  return e?.code === 404 || e?.statusCode === 404;
}
