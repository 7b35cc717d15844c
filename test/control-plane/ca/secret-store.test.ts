import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../../control-plane/ca/authority.ts';
import { CaStorageError } from '../../../control-plane/ca/errors.ts';
import { SecretCaStore } from '../../../control-plane/ca/secret-store.ts';

/** A tiny API server holding Secrets in memory: GET one, POST (409 when it exists). */
let server: Server;
const secrets = new Map<string, { metadata: { name: string; namespace: string }; data?: Record<string, string> }>();
let api: CoreV1Api;
let creates = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const path = req.url?.split('?')[0] ?? '';
      const json = (code: number, obj: unknown) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(obj));
      const status = (code: number, reason: string) => json(code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, code });
      const one = /^\/api\/v1\/namespaces\/([^/]+)\/secrets\/([^/]+)$/.exec(path);
      const list = /^\/api\/v1\/namespaces\/([^/]+)\/secrets$/.exec(path);
      if (req.method === 'GET' && one) {
        const s = secrets.get(`${one[1]}/${one[2]}`);
        return s ? json(200, { apiVersion: 'v1', kind: 'Secret', ...s }) : status(404, 'NotFound');
      }
      if (req.method === 'POST' && list) {
        creates++;
        const obj = JSON.parse(body) as { metadata: { name: string }; data?: Record<string, string> };
        const key = `${list[1]}/${obj.metadata.name}`;
        if (secrets.has(key)) return status(409, 'AlreadyExists');
        secrets.set(key, { metadata: { name: obj.metadata.name, namespace: list[1] ?? '' }, data: obj.data });
        return json(201, { apiVersion: 'v1', kind: 'Secret', ...secrets.get(key) });
      }
      return status(404, 'NotFound');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'cp', token: 't' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'cp' }],
    currentContext: 'fake',
  });
  api = kc.makeApiClient(CoreV1Api);
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
});

describe('SecretCaStore', () => {
  it('creates the root Secret on first start and reuses it afterwards; a racing replica adopts the winner', async () => {
    const a = await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new SecretCaStore({ api }) });
    const stored = secrets.get('skein-system/skein-ca');
    expect(Object.keys(stored?.data ?? {}).sort()).toEqual(['root-cert.pem', 'root-key.pem']);
    const b = await CertificateAuthority.open({ trustDomain: 'mesh.test', store: new SecretCaStore({ api }) });
    expect(b.trustBundle()).toEqual(a.trustBundle());
    expect(creates).toBe(1);

    // A replica that saw no Secret and then lost the create race (409) loads the winner's root.
    const store = new SecretCaStore({ api });
    const theirs = await store.createIfAbsent({ rootCertPem: 'x', rootKeyPem: 'y', extraTrustPem: '' });
    expect(theirs.rootCertPem).toBe(a.trustBundle()[0]);
  });

  it('refuses a Secret missing the key', async () => {
    secrets.set('other/broken', { metadata: { name: 'broken', namespace: 'other' }, data: { 'root-cert.pem': 'eA==' } });
    const err = await new SecretCaStore({ api, namespace: 'other', name: 'broken' }).load().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaStorageError);
    expect((err as Error).message).toContain('lacks root-key.pem');
  });
});
