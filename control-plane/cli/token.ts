// `skein token`: prints a local-mode bootstrap token binding one namespace and service account.
import { existsSync } from 'node:fs';
import { replaceFile } from './files.ts';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CaError } from '../ca/errors.ts';
import { identityProblem } from '../ca/issue.ts';
import { loadOrCreateTokenSecret, MAX_TOKEN_TTL_MS, mintBootstrapToken, parseDurationMs, TOKEN_SECRET_FILE } from '../ca/tokens.ts';

/** Where local mode keeps the CA unless told otherwise (shared with `skein control-plane --ca-dir`). */
export const DEFAULT_CA_DIR = '.skein/ca';

const USAGE = `Usage: skein token --namespace NS --service-account SA [--ca-dir DIR] [--ttl 24h] [--out FILE]

Prints a bootstrap token for a sidecar in local mode. The sidecar sends it to the control plane's
CertificateService (port 15012) and receives a certificate for spiffe://<trust-domain>/ns/NS/sa/SA.
The token is signed with <ca-dir>/token-secret (created with mode 0600 on first use); anyone holding
the token can obtain that identity until it expires, so keep it like a password: --out writes it to a
file with mode 0600 (a shell redirect makes the file readable by everyone, with the usual umask).

Options:
  -n, --namespace NS          Kubernetes-style namespace name (required)
  -s, --service-account SA    service account name (required)
      --ca-dir DIR            the control plane's CA directory (default ${DEFAULT_CA_DIR})
      --ttl DURATION          how long the token is accepted, e.g. 24h, 90m, 30d (default 24h, at most 366d)
  -o, --out FILE              write the token to FILE (mode 0600) instead of printing it
  -h, --help                  show this help
`;

export interface TokenCliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** The process's stdout and stderr, the CLI commands' default io (tests pass their own). */
export const processIo: TokenCliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Runs `skein token` with the arguments after the subcommand; resolves to the exit code. */
export async function runToken(argv: readonly string[], io: TokenCliIo = processIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        namespace: { type: 'string', short: 'n' },
        'service-account': { type: 'string', short: 's' },
        'ca-dir': { type: 'string', default: DEFAULT_CA_DIR },
        ttl: { type: 'string', default: '24h' },
        out: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.stderr(`skein token: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  if (!values.namespace || !values['service-account']) {
    io.stderr(`skein token: --namespace and --service-account are required\n\n${USAGE}`);
    return 2;
  }
  const ttlMs = parseDurationMs(values.ttl);
  if (ttlMs === undefined) {
    io.stderr(`skein token: --ttl "${values.ttl}" is not a duration such as 24h, 90m or 30d\n`);
    return 2;
  }
  if (!(ttlMs > 0) || ttlMs > MAX_TOKEN_TTL_MS) {
    io.stderr(`skein token: --ttl "${values.ttl}" is out of range: use more than 0 and at most 366d\n`);
    return 2;
  }
  // Checked before the secret is made: a bad name leaves no new file behind.
  const problem = identityProblem({ namespace: values.namespace, serviceAccount: values['service-account'] });
  if (problem !== undefined) {
    io.stderr(`skein token: ${problem}\n`);
    return 2;
  }
  try {
    const dir = values['ca-dir'];
    const existed = existsSync(join(dir, TOKEN_SECRET_FILE));
    const secret = await loadOrCreateTokenSecret(dir);
    if (!existed) {
      io.stderr(
        `skein token: no token secret in ${dir} yet; made one. Only a control plane with --ca-dir ${dir} accepts this token ` +
          `(the demo's CA is .skein/demo/ca).\n`,
      );
    }
    const minted = mintBootstrapToken(secret, {
      namespace: values.namespace,
      serviceAccount: values['service-account'],
      ttlMs,
    });
    const out = values.out;
    if (out !== undefined) {
      replaceFile(out, `${minted.token}\n`, 0o600);
    } else io.stdout(`${minted.token}\n`);
    io.stderr(
      `token for ns/${values.namespace}/sa/${values['service-account']} (id ${minted.jti}) valid until ${minted.expiresAt.toISOString()}${out !== undefined ? `, written to ${out} (mode 0600)` : ''}\n`,
    );
    return 0;
  } catch (err) {
    const code = err instanceof CaError ? ` [${err.code}]` : '';
    io.stderr(`skein token: ${(err as Error).message}${code}\n`);
    return 1;
  }
}
