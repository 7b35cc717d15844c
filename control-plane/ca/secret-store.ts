// Kubernetes mode: the CA root kept in a Secret (root-cert.pem, root-key.pem, trust-bundle.pem), created once.
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { logger } from '../log.ts';
import { CaStorageError } from './errors.ts';
import { type CaFiles, type CaStore, ROOT_CERT_FILE, ROOT_KEY_FILE, TRUST_BUNDLE_FILE } from './store.ts';

const log = logger('ca');

export interface SecretCaStoreOptions {
  /** `kubeConfig.makeApiClient(CoreV1Api)`; the control plane needs get and create on this Secret only. */
  readonly api: Pick<CoreV1Api, 'readNamespacedSecret' | 'createNamespacedSecret'>;
  readonly namespace?: string;
  readonly name?: string;
}

function httpCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

function decode(secret: V1Secret, key: string): string | undefined {
  const value = secret.data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

/** The root in Secret `<namespace>/<name>` (default skein-system/skein-ca); RBAC, not file modes, guards the key. */
export class SecretCaStore implements CaStore {
  readonly #api: SecretCaStoreOptions['api'];
  readonly #namespace: string;
  readonly #name: string;
  readonly description: string;

  constructor(options: SecretCaStoreOptions) {
    this.#api = options.api;
    this.#namespace = options.namespace ?? 'skein-system';
    this.#name = options.name ?? 'skein-ca';
    this.description = `Secret ${this.#namespace}/${this.#name}`;
  }

  async load(): Promise<CaFiles | undefined> {
    let secret: V1Secret;
    try {
      secret = await this.#api.readNamespacedSecret({ name: this.#name, namespace: this.#namespace });
    } catch (err) {
      if (httpCode(err) === 404) return undefined;
      throw new CaStorageError(
        `reading ${this.description} failed (${(err as Error).message}); check the API server and that the ` +
          'control plane may get this Secret',
        { cause: err },
      );
    }
    const rootCertPem = decode(secret, ROOT_CERT_FILE);
    const rootKeyPem = decode(secret, ROOT_KEY_FILE);
    if (!rootCertPem || !rootKeyPem) {
      throw new CaStorageError(
        `${this.description} lacks ${!rootCertPem ? ROOT_CERT_FILE : ROOT_KEY_FILE}: fix the Secret or delete it to create a new root`,
      );
    }
    return { rootCertPem, rootKeyPem, extraTrustPem: decode(secret, TRUST_BUNDLE_FILE) ?? '' };
  }

  async createIfAbsent(files: CaFiles): Promise<CaFiles> {
    const data: Record<string, string> = {
      [ROOT_CERT_FILE]: Buffer.from(files.rootCertPem).toString('base64'),
      [ROOT_KEY_FILE]: Buffer.from(files.rootKeyPem).toString('base64'),
    };
    if (files.extraTrustPem) data[TRUST_BUNDLE_FILE] = Buffer.from(files.extraTrustPem).toString('base64');
    try {
      await this.#api.createNamespacedSecret({
        namespace: this.#namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Secret',
          type: 'Opaque',
          metadata: { name: this.#name, namespace: this.#namespace, labels: { 'app.kubernetes.io/part-of': 'skein' } },
          data,
        },
      });
      log.info('created the CA root', { secret: this.description });
      return files;
    } catch (err) {
      if (httpCode(err) !== 409) {
        throw new CaStorageError(
          `creating ${this.description} failed (${(err as Error).message}); the control plane needs create on Secrets there`,
          { cause: err },
        );
      }
      // Another replica created it first: use theirs.
      const existing = await this.load();
      if (!existing) throw new CaStorageError(`${this.description} exists (409) but cannot be read back`);
      return existing;
    }
  }
}
