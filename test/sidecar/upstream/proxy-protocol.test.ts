import { describe, it, expect } from 'vitest';
import { encodeProxyHeader, parseProxyHeader, PROXY_V2_SIGNATURE } from '../../../sidecar/upstream/index.ts';

describe('PROXY protocol v2', () => {
  it('serializes IPv4 as the spec lays it out', () => {
    const b = encodeProxyHeader('10.0.0.1', 1234, '10.0.0.5', 8080);
    expect(b.length).toBe(28);
    expect(b.subarray(0, 12)).toEqual(PROXY_V2_SIGNATURE);
    expect(b[12]).toBe(0x21);
    expect(b[13]).toBe(0x11);
    expect(b.readUInt16BE(14)).toBe(12);
    expect([...b.subarray(16, 24)]).toEqual([10, 0, 0, 1, 10, 0, 0, 5]);
    expect(b.readUInt16BE(24)).toBe(1234);
    expect(b.readUInt16BE(26)).toBe(8080);
  });

  it.each([
    ['10.0.0.1', '10.0.0.5'],
    ['fd00::1', 'fd00:0:0:0:0:0:0:5'],
    ['10.0.0.1', 'fd00::5'],
  ])('round-trips %s → %s', (src, dst) => {
    const b = encodeProxyHeader(src, 40000, dst, 9090);
    const r = parseProxyHeader(Buffer.concat([b, Buffer.from('GET / HTTP/1.1\r\n')]));
    expect(r.kind).toBe('header');
    if (r.kind !== 'header') return;
    expect(r.length).toBe(b.length);
    expect(r.header.command).toBe('proxy');
    expect(r.header.sourcePort).toBe(40000);
    expect(r.header.destinationPort).toBe(9090);
    if (!src.includes(':') && !dst.includes(':')) {
      expect(r.header.sourceAddress).toBe(src);
      expect(r.header.destinationAddress).toBe(dst);
    }
  });

  it('parses IPv6 addresses back in compressed form', () => {
    const r = parseProxyHeader(encodeProxyHeader('fd00::1', 1, '2001:db8::5', 2));
    expect(r.kind === 'header' && r.header.destinationAddress).toBe('2001:db8::5');
    expect(r.kind === 'header' && r.header.sourceAddress).toBe('fd00::1');
  });

  it('asks for more bytes on a partial header and says none for plain data', () => {
    const b = encodeProxyHeader('10.0.0.1', 1, '10.0.0.2', 2);
    for (const n of [1, 5, 12, 15, 16, 27]) expect(parseProxyHeader(b.subarray(0, n)).kind).toBe('partial');
    expect(parseProxyHeader(Buffer.from('GET / HTTP/1.1')).kind).toBe('none');
    expect(parseProxyHeader(Buffer.from('\r\n\r\nX')).kind).toBe('none');
  });

  it('accepts LOCAL and rejects other versions and commands with a stable code', () => {
    const local = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    expect(parseProxyHeader(local)).toEqual({ kind: 'header', header: { command: 'local' }, length: 16 });
    const v1 = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x11, 0x11, 0x00, 0x00])]);
    expect(() => parseProxyHeader(v1)).toThrow(expect.objectContaining({ code: 'SKEIN_PROXY_PROTOCOL' }));
    const cmd = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x2f, 0x11, 0x00, 0x00])]);
    expect(() => parseProxyHeader(cmd)).toThrow(/neither LOCAL nor PROXY/);
    const short = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4])]);
    expect(() => parseProxyHeader(short)).toThrow(/expected 12/);
  });
});

describe('PROXY protocol v1 (text), as nginx stream proxy_protocol and haproxy send-proxy write it', () => {
  const v1 = (s: string) => Buffer.from(s, 'latin1');

  it('parses TCP4 and TCP6 headers and hands over what follows', () => {
    const r = parseProxyHeader(v1('PROXY TCP4 192.168.0.1 10.0.0.5 56324 8080\r\nGET / HTTP/1.1\r\n'));
    expect(r).toEqual({
      kind: 'header',
      length: 44,
      header: { command: 'proxy', sourceAddress: '192.168.0.1', destinationAddress: '10.0.0.5', sourcePort: 56324, destinationPort: 8080 },
    });
    const r6 = parseProxyHeader(v1('PROXY TCP6 fd00::1 ::ffff:10.0.0.5 1 65535\r\n'));
    expect(r6.kind === 'header' && r6.header).toEqual({ command: 'proxy', sourceAddress: 'fd00::1', destinationAddress: '10.0.0.5', sourcePort: 1, destinationPort: 65535 });
    // Addresses come out as a v2 header's would: compressed, lower case, IPv4-mapped ones dotted.
    const long = parseProxyHeader(v1('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:0a00:0005 1 2\r\n'));
    expect(long.kind === 'header' && [long.header.sourceAddress, long.header.destinationAddress]).toEqual(['2001:db8::1', '10.0.0.5']);
    expect(parseProxyHeader(v1('PROXY UNKNOWN\r\n'))).toEqual({ kind: 'header', header: { command: 'local' }, length: 15 });
    expect(parseProxyHeader(v1('PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n')).kind).toBe('header');
  });

  it('asks for more bytes until the CRLF, and says none for requests that only start alike', () => {
    for (const partial of ['P', 'PROX', 'PROXY ', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r']) expect(parseProxyHeader(v1(partial)).kind, partial).toBe('partial');
    for (const data of ['POST / HTTP/1.1\r\n', 'PUT /', 'PRI * HTTP/2.0\r\n', 'PROPFIND / HTTP/1.1\r\n']) expect(parseProxyHeader(v1(data)).kind, data).toBe('none');
  });

  it('names what is wrong with a bad header', () => {
    const bad: Array<[string, RegExp]> = [
      ['PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol "UDP4"/],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', /3 addresses and ports, expected 4/],
      ['PROXY TCP4 ::1 5.6.7.8 1 2\r\n', /source address "::1" is not IPv4/],
      ['PROXY TCP6 ::1 5.6.7.8 1 2\r\n', /destination address "5.6.7.8" is not IPv6/],
      ['PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', /source address "fe80::1%eth0" is not IPv6/],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', /source port "01"/],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n', /destination port "65536"/],
      [`PROXY TCP4 ${'1'.repeat(120)}`, /no CRLF within 107 bytes/],
    ];
    for (const [text, why] of bad) expect(() => parseProxyHeader(v1(text)), text).toThrow(why);
  });
});
