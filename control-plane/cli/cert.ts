// `skein cert`: issues a mesh certificate and key from the local CA directory, for a native proxy (haproxy, Envoy) as a peer.
import { existsSync, mkdirSync } from 'node:fs';
import { othersMayWrite, replaceFile } from './files.ts';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CaError, CertificateAuthority, DEFAULT_TRUST_DOMAIN, DirectoryCaStore } from '../ca/index.ts';
import { identityProblem, issueLeaf, MAX_LEAF_TTL_MS } from '../ca/issue.ts';
import { ROOT_CERT_FILE } from '../ca/store.ts';
import { parseDurationMs } from '../ca/tokens.ts';
import { forgePrivateKey, generateRsaKey, publicKeyOf } from '../ca/x509.ts';
import { DEFAULT_CA_DIR, processIo, type TokenCliIo } from './token.ts';

const USAGE = `Usage: skein cert --namespace NS --service-account SA --out-dir DIR [--ca-dir DIR] [--trust-domain TD] [--ttl 24h]

Issues a certificate for spiffe://<trust-domain>/ns/NS/sa/SA straight from the local CA directory (the one
'skein control-plane --ca-dir' uses), for a proxy that is not a Skein sidecar: haproxy or Envoy calling a
sidecar, or receiving in a Pod's place. It writes, in --out-dir:
  cert.pem          the certificate, then the chain to the root
  key.pem           its private key (mode 0600)
  cert-and-key.pem  both in one file, as haproxy's 'crt' takes them (mode 0600)
  root-cert.pem     the mesh's trust bundle, for 'ca-file' / validation_context
Certificates live at most 7 days and are not renewed: issue a new one before this one expires.

Options:
  -n, --namespace NS          Kubernetes-style namespace name (required)
  -s, --service-account SA    service account name (required)
  -o, --out-dir DIR           where to write the files (created with mode 0700 if missing)
      --ca-dir DIR            the control plane's CA directory (default ${DEFAULT_CA_DIR})
      --trust-domain TD       the mesh's trust domain (default ${DEFAULT_TRUST_DOMAIN}; the control plane's --trust-domain)
      --ttl DURATION          lifetime, e.g. 24h or 7d (default 24h, at most 7d)
  -h, --help                  show this help
`;

/** Runs `skein cert` with the arguments after the subcommand; resolves to the exit code. */
export async function runCert(argv: readonly string[], io: TokenCliIo = processIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        namespace: { type: 'string', short: 'n' },
        'service-account': { type: 'string', short: 's' },
        'out-dir': { type: 'string', short: 'o' },
        'ca-dir': { type: 'string', default: DEFAULT_CA_DIR },
        'trust-domain': { type: 'string', default: DEFAULT_TRUST_DOMAIN },
        ttl: { type: 'string', default: '24h' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.stderr(`skein cert: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  const namespace = values.namespace;
  const serviceAccount = values['service-account'];
  const outDir = values['out-dir'];
  if (!namespace || !serviceAccount || !outDir) {
    io.stderr(`skein cert: --namespace, --service-account and --out-dir are required\n\n${USAGE}`);
    return 2;
  }
  const problem = identityProblem({ namespace, serviceAccount });
  if (problem !== undefined) {
    io.stderr(`skein cert: ${problem}\n`);
    return 2;
  }
  const ttlMs = parseDurationMs(values.ttl);
  if (ttlMs === undefined || !(ttlMs > 0) || ttlMs > MAX_LEAF_TTL_MS) {
    io.stderr(`skein cert: --ttl "${values.ttl}" must be a duration such as 24h or 7d, more than 0 and at most 7d\n`);
    return 2;
  }
  const caDir = values['ca-dir'];
  // Never make a new root here: a certificate under a root no control plane uses would be refused by every sidecar.
  if (!existsSync(join(caDir, ROOT_CERT_FILE))) {
    io.stderr(`skein cert: no CA in ${caDir} (no ${ROOT_CERT_FILE}): start 'skein control-plane --ca-dir ${caDir}' once, or pass the --ca-dir it uses (the demo's is .skein/demo/ca)\n`);
    return 1;
  }
  try {
    const ca = await CertificateAuthority.open({ trustDomain: values['trust-domain'], store: new DirectoryCaStore(caDir) });
    const { keyPem } = await generateRsaKey();
    const issued = issueLeaf(ca, publicKeyOf(forgePrivateKey(keyPem, 'the new key')), { identity: { namespace, serviceAccount }, ttlMs });
    const chain = issued.certChain.join('');
    mkdirSync(outDir, { recursive: true, mode: 0o700 });
    const unsafe = othersMayWrite(outDir);
    if (unsafe !== undefined) {
      io.stderr(`skein cert: ${unsafe}\n`);
      return 1;
    }
    const write = (name: string, text: string, mode: number): void => replaceFile(join(outDir, name), text, mode);
    write('cert.pem', chain, 0o644);
    write('key.pem', keyPem, 0o600);
    write('cert-and-key.pem', `${chain}${keyPem}`, 0o600);
    write('root-cert.pem', issued.trustBundle.join(''), 0o644);
    io.stderr(`certificate for ${issued.spiffeId} valid until ${issued.notAfter.toISOString()}, written to ${outDir} (cert.pem, key.pem, cert-and-key.pem, root-cert.pem)\n`);
    return 0;
  } catch (err) {
    const code = err instanceof CaError ? ` [${err.code}]` : '';
    io.stderr(`skein cert: ${(err as Error).message}${code}\n`);
    return 1;
  }
}
