// A throw-away test CA made with openssl (RSA 2048, like the mesh's workload keys) for TLS between the two haproxies.
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HaproxyTls } from './haproxy.ts';

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', [...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Makes ca.pem plus client and server leaves signed by it (each PEM = cert + key, mode 0600) in `dir`. */
export function makeTestCa(dir: string): HaproxyTls {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=skein-bench-ca'], dir);
  chmodSync(join(dir, 'ca.key'), 0o600);
  const leaf = (name: string, san: string): string => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`],
      dir,
    );
    const pem = join(dir, `${name}.pem`);
    writeFileSync(pem, readFileSync(join(dir, `${name}.crt`), 'utf8') + readFileSync(join(dir, `${name}.key`), 'utf8'), { mode: 0o600 });
    return pem;
  };
  return {
    caFile: join(dir, 'ca.pem'),
    clientPem: leaf('client', 'URI:spiffe://cluster.local/ns/default/sa/bench-client'),
    serverPem: leaf('server', 'URI:spiffe://cluster.local/ns/default/sa/bench-server,IP:127.0.0.3'),
  };
}
