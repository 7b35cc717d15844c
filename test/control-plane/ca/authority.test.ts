import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CertificateAuthority, createRoot } from '../../../control-plane/ca/authority.ts';
import { CaConfigError, CaStorageError } from '../../../control-plane/ca/errors.ts';
import { issueFromCsr } from '../../../control-plane/ca/issue.ts';
import { DirectoryCaStore } from '../../../control-plane/ca/store.ts';
import { makeCsr } from './csr-helper.ts';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'skein-ca-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe('CertificateAuthority with a directory store', () => {
  it('creates a root on first start with a 0700 directory and a 0600 key, and reloads the same root', async () => {
    const dir = join(await tempDir(), 'ca');
    const ca = await CertificateAuthority.open({ trustDomain: 'example.org', store: new DirectoryCaStore(dir) });
    expect(await mode(dir)).toBe(0o700);
    expect(await mode(join(dir, 'root-key.pem'))).toBe(0o600);
    const rootPem = await readFile(join(dir, 'root-cert.pem'), 'utf8');
    const root = new X509Certificate(rootPem);
    expect(root.ca).toBe(true);
    expect(root.publicKey.asymmetricKeyType).toBe('rsa');
    expect(ca.trustBundle()).toEqual([rootPem]);
    expect(ca.chain()).toEqual([]);

    const again = await CertificateAuthority.open({ trustDomain: 'example.org', store: new DirectoryCaStore(dir) });
    expect(new X509Certificate(again.trustBundle()[0] ?? '').fingerprint256).toBe(root.fingerprint256);
  });

  it('two control planes starting at once on an empty directory end up with one root', async () => {
    const dir = join(await tempDir(), 'ca');
    const [a, b] = await Promise.all([
      CertificateAuthority.open({ store: new DirectoryCaStore(dir) }),
      CertificateAuthority.open({ store: new DirectoryCaStore(dir) }),
    ]);
    expect(a.trustBundle()).toEqual(b.trustBundle());
    const leaf = issueFromCsr(b, makeCsr().csrPem, { namespace: 'ns', serviceAccount: 'sa' });
    expect(new X509Certificate(leaf.certChain[0] ?? '').verify(new X509Certificate(a.trustBundle()[0] ?? '').publicKey)).toBe(true);
  });

  it('refuses a root key readable by group or others and says how to fix it', async () => {
    const dir = join(await tempDir(), 'ca');
    await CertificateAuthority.open({ store: new DirectoryCaStore(dir) });
    await chmod(join(dir, 'root-key.pem'), 0o644);
    const err = await CertificateAuthority.open({ store: new DirectoryCaStore(dir) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaStorageError);
    expect((err as CaStorageError).code).toBe('SKEIN_CA_STORAGE');
    expect((err as Error).message).toContain('chmod 600');
  });

  it('refuses a directory others can write', async () => {
    const dir = join(await tempDir(), 'ca');
    await CertificateAuthority.open({ store: new DirectoryCaStore(dir) });
    await chmod(dir, 0o777);
    await expect(CertificateAuthority.open({ store: new DirectoryCaStore(dir) })).rejects.toThrow(/chmod 700/);
  });

  it('adds the extra roots of trust-bundle.pem to the trust bundle, without duplicates', async () => {
    const dir = join(await tempDir(), 'ca');
    const first = await CertificateAuthority.open({ store: new DirectoryCaStore(dir) });
    const other = await createRoot('cluster.local');
    await writeFile(join(dir, 'trust-bundle.pem'), `${other.certPem}${first.trustBundle()[0]}`);
    const ca = await CertificateAuthority.open({ store: new DirectoryCaStore(dir) });
    expect(ca.trustBundle()).toEqual([first.trustBundle()[0], other.certPem]);
  });

  it('refuses a root whose key does not match its certificate', async () => {
    const dir = join(await tempDir(), 'ca');
    await CertificateAuthority.open({ store: new DirectoryCaStore(dir) });
    const other = await createRoot('cluster.local');
    await writeFile(join(dir, 'root-cert.pem'), other.certPem);
    await expect(CertificateAuthority.open({ store: new DirectoryCaStore(dir) })).rejects.toThrow(/does not match/);
  });

  it('names the root key file when it does not parse (truncated or garbage), not only OpenSSL\'s decoder error', async () => {
    const dir = join(await tempDir(), 'ca');
    await CertificateAuthority.open({ store: new DirectoryCaStore(dir) });
    await writeFile(join(dir, 'root-key.pem'), '-----BEGIN PRIVATE KEY-----\nnot a key\n', { mode: 0o600 });
    await expect(CertificateAuthority.open({ store: new DirectoryCaStore(dir) })).rejects.toThrow(/root in directory .*: the private key does not parse .*; it must be a PEM private key/);
  });
});

describe('CertificateAuthority with a provided root', () => {
  async function providedRoot(keyMode = 0o600) {
    const dir = await tempDir();
    const root = await createRoot('cluster.local');
    const certFile = join(dir, 'ca-cert.pem');
    const keyFile = join(dir, 'ca-key.pem');
    await writeFile(certFile, root.certPem);
    await writeFile(keyFile, root.keyPem, { mode: keyMode });
    await chmod(keyFile, keyMode);
    return { root, certFile, keyFile };
  }

  it('issues from an intermediate it creates under the root; the chain verifies up to the root', async () => {
    const { root, certFile, keyFile } = await providedRoot();
    const ca = await CertificateAuthority.open({ providedRoot: { certFile, keyFile } });
    expect(ca.trustBundle()).toEqual([root.certPem]);
    expect(ca.chain()).toHaveLength(1);
    const intermediate = new X509Certificate(ca.chain()[0] ?? '');
    const rootX = new X509Certificate(root.certPem);
    expect(intermediate.ca).toBe(true);
    expect(intermediate.checkIssued(rootX)).toBe(true);
    expect(intermediate.verify(rootX.publicKey)).toBe(true);

    const issued = issueFromCsr(ca, makeCsr().csrPem, { namespace: 'shop', serviceAccount: 'cart' });
    expect(issued.certChain).toHaveLength(2);
    const leaf = new X509Certificate(issued.certChain[0] ?? '');
    expect(leaf.checkIssued(intermediate)).toBe(true);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(leaf.verify(rootX.publicKey)).toBe(false);
  });

  it('refuses a provided root key readable by others', async () => {
    const { certFile, keyFile } = await providedRoot(0o640);
    await expect(CertificateAuthority.open({ providedRoot: { certFile, keyFile } })).rejects.toBeInstanceOf(CaStorageError);
  });

  it('refuses a provided certificate that is not a CA', async () => {
    const { certFile, keyFile } = await providedRoot();
    const ca = await CertificateAuthority.open({ providedRoot: { certFile, keyFile } });
    const { keyPem, csrPem } = makeCsr();
    const leaf = issueFromCsr(ca, csrPem, { namespace: 'a', serviceAccount: 'b' });
    const dir = await tempDir();
    await writeFile(join(dir, 'leaf.pem'), leaf.certChain[0] ?? '');
    await writeFile(join(dir, 'leaf-key.pem'), keyPem, { mode: 0o600 });
    const err = await CertificateAuthority.open({
      providedRoot: { certFile: join(dir, 'leaf.pem'), keyFile: join(dir, 'leaf-key.pem') },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaConfigError);
    expect((err as Error).message).toContain('not a CA');
  });
});
