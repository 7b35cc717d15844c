// A sidecar pointed at an HTTP/1.1 port (the control plane's admin port) instead of its xDS port says so in its log.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SKEIN = fileURLToPath(new URL('../../../cli/skein.ts', import.meta.url));

describe('skein sidecar --control-plane at an HTTP/1.1 port', () => {
  it('logs a reconnect with a hint naming the xDS port', { timeout: 20_000 }, async () => {
    const admin = http.createServer((_req, res) => res.end('ok\n'));
    await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
    const port = (admin.address() as AddressInfo).port;
    const args = ['sidecar', '--control-plane', `127.0.0.1:${port}`, '--pod', 'p', '--namespace', 'default', '--ip', '127.0.0.1', '--mtls', 'off'];
    const ports = ['--outbound-address', '127.0.0.1:0', '--inbound-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'];
    const child = spawn(process.execPath, [SKEIN, ...args, ...ports], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let err = '';
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (s: string) => {
          err += s;
          const found = err.split('\n').find((l) => l.includes('ADS stream closed; reconnecting'));
          if (found !== undefined) resolve(found);
        });
        child.once('exit', (code) => reject(new Error(`sidecar exited ${code}: ${err}`)));
      });
      expect(JSON.parse(line).hint).toContain('--control-plane takes the xDS port (15010 by default)');
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
      await new Promise((r) => admin.close(r));
    }
  });
});
