// Tests bootstrap tokens: minting and verifying, the `skein token` command, and TokenReview against a fake API server.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthenticationV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runToken } from '../../../control-plane/cli/token.ts';
import { TokenError, VerifierUnavailableError } from '../../../control-plane/ca/errors.ts';
import { serviceAccountFromUsername, TokenReviewVerifier } from '../../../control-plane/ca/token-review.ts';
import {
  BootstrapTokenVerifier,
  loadOrCreateTokenSecret,
  mintBootstrapToken,
  parseDurationMs,
} from '../../../control-plane/ca/tokens.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-tokens-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('bootstrap tokens', () => {
  it('keeps the secret in a 0600 file and verifies the namespace and service account it binds', async () => {
    const caDir = join(dir, 'ca1');
    const secret = await loadOrCreateTokenSecret(caDir);
    expect((await stat(join(caDir, 'token-secret'))).mode & 0o777).toBe(0o600);
    expect(await loadOrCreateTokenSecret(caDir)).toEqual(secret);
    const { token } = mintBootstrapToken(secret, { namespace: 'shop', serviceAccount: 'cart' });
    const verifier = await BootstrapTokenVerifier.fromDir(caDir);
    expect(await verifier.verify(token)).toEqual({ namespace: 'shop', serviceAccount: 'cart' });
  });

  it('refuses expired, altered and foreign tokens with TokenError', async () => {
    const secret = await loadOrCreateTokenSecret(join(dir, 'ca2'));
    const other = await loadOrCreateTokenSecret(join(dir, 'ca3'));
    const now = new Date('2030-01-01T00:00:00Z');
    const verifier = new BootstrapTokenVerifier(secret, () => now);
    const expired = mintBootstrapToken(secret, { namespace: 'a', serviceAccount: 'b', ttlMs: 1000, now: new Date(now.getTime() - 5000) });
    await expect(verifier.verify(expired.token)).rejects.toThrow(/expired at 2029-12-31T23:59:56/);
    const foreign = mintBootstrapToken(other, { namespace: 'a', serviceAccount: 'b', now });
    await expect(verifier.verify(foreign.token)).rejects.toThrow(/signature does not match/);
    const good = mintBootstrapToken(secret, { namespace: 'a', serviceAccount: 'b', now }).token;
    const [p, claims, m] = good.split('.');
    const altered = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(claims ?? '', 'base64url').toString()), ns: 'kube-system' }),
    ).toString('base64url');
    await expect(verifier.verify(`${p}.${altered}.${m}`)).rejects.toBeInstanceOf(TokenError);
    await expect(verifier.verify('eyJhbGciOi.x.y')).rejects.toThrow(/not a Skein bootstrap token/);
  });

  it('refuses to mint for names Kubernetes would refuse', () => {
    expect(() => mintBootstrapToken(Buffer.alloc(32), { namespace: 'a/b', serviceAccount: 'x' })).toThrow(TokenError);
    expect(() => mintBootstrapToken(Buffer.alloc(32), { namespace: 'a', serviceAccount: 'x', ttlMs: -1 })).toThrow(/ttl/);
  });

  it('parses durations', () => {
    expect(parseDurationMs('24h')).toBe(86_400_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('7d')).toBe(604_800_000);
    expect(parseDurationMs('12')).toBeUndefined();
    expect(parseDurationMs('1x')).toBeUndefined();
  });
});

describe('skein token', () => {
  function io() {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t) } };
  }

  it('prints a token the CA directory verifies', async () => {
    const caDir = join(dir, 'cli');
    const { out, err, io: cliIo } = io();
    const code = await runToken(['--namespace', 'shop', '--service-account', 'cart', '--ca-dir', caDir, '--ttl', '2h'], cliIo);
    expect(code).toBe(0);
    expect(err.join('')).toContain('ns/shop/sa/cart');
    const verifier = await BootstrapTokenVerifier.fromDir(caDir);
    expect(await verifier.verify((out[0] ?? '').trim())).toEqual({ namespace: 'shop', serviceAccount: 'cart' });
    // The first token made a new secret, and said which control plane will accept it; the next one does not.
    expect(err.join('')).toContain(`no token secret in ${caDir} yet`);
    const again = io();
    expect(await runToken(['-n', 'shop', '-s', 'cart', '--ca-dir', caDir], again.io)).toBe(0);
    expect(again.err.join('')).not.toContain('no token secret');
  });

  it('exits 2 with usage for missing or bad flags', async () => {
    const a = io();
    expect(await runToken(['--namespace', 'shop'], a.io)).toBe(2);
    expect(a.err.join('')).toContain('--service-account are required');
    const b = io();
    expect(await runToken(['-n', 'a', '-s', 'b', '--ttl', 'soon'], b.io)).toBe(2);
    expect(b.err.join('')).toContain('"soon" is not a duration');
    const c = io();
    expect(await runToken(['--bogus'], c.io)).toBe(2);
    const d = io();
    expect(await runToken(['-n', 'a', '-s', 'b', '--ttl', '400d'], d.io)).toBe(2);
    expect(d.err.join('')).toContain('--ttl "400d" is out of range');
    // A name Kubernetes would refuse is refused before a secret is made.
    const e = io();
    const fresh = join(dir, 'bad-name');
    expect(await runToken(['-n', 'Demo.X', '-s', 'a', '--ca-dir', fresh], e.io)).toBe(2);
    expect(e.err.join('')).toBe('skein token: namespace "Demo.X" is not a valid Kubernetes namespace name\n');
    expect(existsSync(fresh)).toBe(false);
  });

  it('--out writes the token to a file only its owner can read, also over an existing readable file', async () => {
    const caDir = join(dir, 'cli-out');
    const file = join(dir, 'cart.token');
    await writeFile(file, 'old\n', { mode: 0o644 });
    const { out, err, io: cliIo } = io();
    expect(await runToken(['-n', 'shop', '-s', 'cart', '--ca-dir', caDir, '--out', file], cliIo)).toBe(0);
    expect(out.join('')).toBe('');
    expect(err.join('')).toContain(`written to ${file} (mode 0600)`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const verifier = await BootstrapTokenVerifier.fromDir(caDir);
    expect(await verifier.verify((await readFile(file, 'utf8')).trim())).toEqual({ namespace: 'shop', serviceAccount: 'cart' });
  });
});

describe('TokenReviewVerifier against a fake API server', () => {
  let server: Server;
  const reviews: unknown[] = [];
  let api: AuthenticationV1Api;

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url?.split('?')[0] !== '/apis/authentication.k8s.io/v1/tokenreviews') {
          res.writeHead(404).end();
          return;
        }
        const review = JSON.parse(body) as { spec: { token: string; audiences?: string[] } };
        reviews.push(review);
        const token = review.spec.token;
        const status =
          token === 'sa-token'
            ? { authenticated: true, user: { username: 'system:serviceaccount:shop:cart' }, audiences: review.spec.audiences }
            : token === 'user-token'
              ? { authenticated: true, user: { username: 'alice' } }
              : token === 'boom'
                ? undefined
                : { authenticated: false, error: 'invalid bearer token' };
        if (!status) {
          res.writeHead(500, { 'content-type': 'application/json' }).end('{"kind":"Status","message":"etcd down"}');
          return;
        }
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: review.spec, status }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: 'cp', token: 'control-plane-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'cp' }],
      currentContext: 'fake',
    });
    api = kc.makeApiClient(AuthenticationV1Api);
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it('takes ns and sa from system:serviceaccount:<ns>:<sa> and sends the audiences', async () => {
    const verifier = new TokenReviewVerifier({ api, audiences: ['skein-ca'] });
    expect(await verifier.verify('sa-token')).toEqual({ namespace: 'shop', serviceAccount: 'cart' });
    expect(reviews.at(-1)).toMatchObject({ kind: 'TokenReview', spec: { token: 'sa-token', audiences: ['skein-ca'] } });
  });

  it('refuses unauthenticated tokens and non-service-account users; reports an API failure as unavailable', async () => {
    const verifier = new TokenReviewVerifier({ api });
    await expect(verifier.verify('forged')).rejects.toThrow(/invalid bearer token/);
    await expect(verifier.verify('user-token')).rejects.toThrow(/"alice", not to a service account/);
    await expect(verifier.verify('boom')).rejects.toBeInstanceOf(VerifierUnavailableError);
  });

  it('parses service-account usernames', () => {
    expect(serviceAccountFromUsername('system:serviceaccount:a:b')).toEqual({ namespace: 'a', serviceAccount: 'b' });
    expect(serviceAccountFromUsername('system:serviceaccount:a')).toBeUndefined();
    expect(serviceAccountFromUsername('system:node:n1')).toBeUndefined();
  });
});
