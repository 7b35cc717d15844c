// The demo's pre-flight check of its fixed pod addresses: taken ones, and ones the machine does not have (macOS loopback).
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { unusableAddresses } from '../../examples/demo/processes.ts';

describe('unusableAddresses', () => {
  it('tells an address in use from a host this machine does not have, and passes a free one', async (ctx) => {
    let nonlocal = '0';
    try {
      nonlocal = readFileSync('/proc/sys/net/ipv4/ip_nonlocal_bind', 'utf8').trim();
    } catch {
      // not Linux: binding an address the machine lacks fails there too
    }
    if (nonlocal === '1') ctx.skip('net.ipv4.ip_nonlocal_bind=1 here: any address can be bound');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      // 192.0.2.0/24 (TEST-NET-1) is on no interface: binding it fails with EADDRNOTAVAIL, as 127.0.0.9 does on macOS.
      const result = await unusableAddresses([`127.0.0.1:${port}`, '192.0.2.1:15001', '192.0.2.1:15006', '127.0.0.1:0']);
      expect(result).toEqual({ busy: [`127.0.0.1:${port}`], missingHosts: ['192.0.2.1'] });
    } finally {
      taken.close();
    }
  });
});
