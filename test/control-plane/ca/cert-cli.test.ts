// `skein cert`: a mesh certificate for a native proxy, issued from the local CA directory.
import { X509Certificate } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CertificateAuthority, DirectoryCaStore } from '../../../control-plane/ca/index.ts';
import { runCert } from '../../../control-plane/cli/cert.ts';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function run(argv: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const code = await runCert(argv, { stdout: () => {}, stderr: (t) => (err += t) });
  return { code, err };
}

/** A temporary directory with a CA of trust domain mesh.test in `ca/`; `out` is where certificates go. */
async function withCa(): Promise<{ dir: string; caDir: string; out: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'skein-cert-'));
  dirs.push(dir);
  const caDir = join(dir, 'ca');
  await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new DirectoryCaStore(caDir) });
  return { dir, caDir, out: join(dir, 'out') };
}

describe('skein cert', () => {
  it('writes a certificate for the SPIFFE ID that chains to the CA root, its key 0600, and the trust bundle', async () => {
    const { caDir, out } = await withCa();
    const r = await run(['-n', 'shop', '-s', 'haproxy', '--ca-dir', caDir, '--trust-domain', 'mesh.test', '--ttl', '2h', '--out-dir', out]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('certificate for spiffe://mesh.test/ns/shop/sa/haproxy');
    const leaf = new X509Certificate(await readFile(join(out, 'cert.pem')));
    const root = new X509Certificate(await readFile(join(out, 'root-cert.pem')));
    expect(leaf.subjectAltName).toBe('URI:spiffe://mesh.test/ns/shop/sa/haproxy');
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(new Date(leaf.validTo).getTime() - Date.now()).toBeLessThanOrEqual(2 * 3600_000 + 1000);
    for (const name of ['key.pem', 'cert-and-key.pem']) expect((await stat(join(out, name))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(out, 'cert-and-key.pem'), 'utf8')).toMatch(/BEGIN CERTIFICATE[\s\S]*BEGIN PRIVATE KEY/);
  });

  it('replaces what is in the way (a symlink, a file made by someone else) and refuses a directory others may write', async () => {
    const { dir, caDir, out } = await withCa();
    await mkdir(out, { mode: 0o700 });
    const elsewhere = join(dir, 'elsewhere.pem');
    await writeFile(elsewhere, 'untouched\n');
    await symlink(elsewhere, join(out, 'cert-and-key.pem'));
    await writeFile(join(out, 'key.pem'), 'planted\n', { mode: 0o666 });
    await chmod(join(out, 'key.pem'), 0o666);
    const args = ['-n', 'shop', '-s', 'api', '--ca-dir', caDir, '--trust-domain', 'mesh.test', '--out-dir', out];
    expect((await run(args)).code).toBe(0);
    expect(await readFile(elsewhere, 'utf8')).toBe('untouched\n');
    expect((await lstat(join(out, 'cert-and-key.pem'))).isSymbolicLink()).toBe(false);
    expect((await stat(join(out, 'key.pem'))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(out, 'key.pem'), 'utf8')).toContain('BEGIN PRIVATE KEY');
    await chmod(out, 0o777);
    const shared = await run(args);
    expect(shared.code).toBe(1);
    expect(shared.err).toContain('has mode 0777: others could replace the files written there');
  });

  it('refuses to make a root of its own, and names what is wrong with bad flags', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skein-cert-'));
    dirs.push(dir);
    const none = await run(['-n', 'shop', '-s', 'api', '--ca-dir', join(dir, 'nothing'), '--out-dir', join(dir, 'out')]);
    expect(none.code).toBe(1);
    expect(none.err).toContain('no CA in');
    expect((await run(['-n', 'shop', '-s', 'api', '--out-dir', dir, '--ttl', '30d'])).err).toContain('at most 7d');
    expect((await run(['-n', 'Shop!', '-s', 'api', '--out-dir', dir])).err).toContain('is not a valid Kubernetes namespace name');
    expect((await run(['-n', 'shop', '-s', 'api'])).code).toBe(2);
  });
});
