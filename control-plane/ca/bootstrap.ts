// Opens the mesh CA for the control plane's mode: a 0600 directory and bootstrap tokens locally, a Secret and TokenReview in Kubernetes.
import type { KubeConfig } from '@kubernetes/client-node';
import { CertificateAuthority, type ProvidedRoot } from './authority.ts';
import { SecretCaStore } from './secret-store.ts';
import { ServingCertificateProvider } from './serving.ts';
import { DirectoryCaStore } from './store.ts';
import { RoutingVerifier, TokenReviewVerifier } from './token-review.ts';
import { BootstrapTokenVerifier, type IdentityVerifier, isBootstrapToken } from './tokens.ts';

export interface MeshCaOptions {
  readonly trustDomain: string;
  readonly caDir: string;
  /** Issue under the user's own root (an intermediate is made under it) instead of a self-made root. */
  readonly providedRoot?: ProvidedRoot;
  /** Set in Kubernetes mode: the root lives in a Secret and workload tokens are checked with TokenReview. */
  readonly kubeconfig?: { readonly load: () => KubeConfig };
  /** Kubernetes mode: the audience service-account tokens must carry ('' or absent: the API server's default). */
  readonly tokenAudience?: string;
  /** SANs of the 15012 serving certificate. */
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
}

export interface MeshCa {
  readonly authority: CertificateAuthority;
  readonly verifier: IdentityVerifier;
  readonly serving: ServingCertificateProvider;
}

export async function openMeshCa(options: MeshCaOptions): Promise<MeshCa> {
  const kc = options.kubeconfig?.load();
  // Loaded only with a cluster: client-node's generated API is tens of MB of code a file-registry run never uses.
  const k8s = kc ? await import('@kubernetes/client-node') : undefined;
  const store = kc && k8s
    ? new SecretCaStore({ api: kc.makeApiClient(k8s.CoreV1Api) })
    : new DirectoryCaStore(options.caDir);
  const authority = await CertificateAuthority.open({
    trustDomain: options.trustDomain,
    ...(options.providedRoot ? { providedRoot: options.providedRoot } : { store }),
  });
  const bootstrap = await BootstrapTokenVerifier.fromDir(options.caDir);
  const verifier = kc && k8s
    ? new RoutingVerifier(
        bootstrap,
        new TokenReviewVerifier({ api: kc.makeApiClient(k8s.AuthenticationV1Api), audiences: options.tokenAudience ? [options.tokenAudience] : [] }),
        isBootstrapToken,
      )
    : bootstrap;
  const serving = await ServingCertificateProvider.start(authority, {
    dnsNames: [...options.dnsNames],
    ipAddresses: [...options.ipAddresses],
  });
  return { authority, verifier, serving };
}
