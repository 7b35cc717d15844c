// PROXY protocol (HAProxy spec): the v2 header a sidecar writes first on a connection to a peer's inbound port; v1 and v2 read.
import net from 'node:net';
import { ProxyProtocolError } from '../listeners/errors.ts';

/** `\r\n\r\n\0\r\nQUIT\n`: the 12-byte v2 signature. */
export const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const HEADER_FIXED = 16;
const CMD_LOCAL = 0x20;
const CMD_PROXY = 0x21;
const FAM_TCP4 = 0x11;
const FAM_TCP6 = 0x21;

export interface ProxyHeader {
  /** 'local': a health check or the peer's own connection, no addresses. */
  readonly command: 'proxy' | 'local';
  readonly sourceAddress?: string;
  readonly sourcePort?: number;
  readonly destinationAddress?: string;
  readonly destinationPort?: number;
}

/** Encodes a PROXY v2 header for a TCP connection (IPv4 or IPv6; both addresses of the same family). */
export function encodeProxyHeader(src: string, srcPort: number, dst: string, dstPort: number): Buffer {
  const v6 = net.isIPv6(src) || net.isIPv6(dst);
  const addrLen = v6 ? 36 : 12;
  const buf = Buffer.alloc(HEADER_FIXED + addrLen);
  SIGNATURE.copy(buf, 0);
  buf[12] = CMD_PROXY;
  buf[13] = v6 ? FAM_TCP6 : FAM_TCP4;
  buf.writeUInt16BE(addrLen, 14);
  if (v6) {
    writeIPv6(buf, 16, toV6(src));
    writeIPv6(buf, 32, toV6(dst));
    buf.writeUInt16BE(srcPort, 48);
    buf.writeUInt16BE(dstPort, 50);
  } else {
    writeIPv4(buf, 16, src);
    writeIPv4(buf, 20, dst);
    buf.writeUInt16BE(srcPort, 24);
    buf.writeUInt16BE(dstPort, 26);
  }
  return buf;
}

export type ParseResult =
  /** Not a PROXY connection: the bytes are application data. */
  | { readonly kind: 'none' }
  /** A prefix of a header so far: read more. */
  | { readonly kind: 'partial' }
  | { readonly kind: 'header'; readonly header: ProxyHeader; readonly length: number };

/** `PROXY `: the start of a v1 (text) header. */
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The longest v1 header, CRLF included (the spec's 107 bytes). */
const V1_MAX = 107;
const V1_PORT = /^(0|[1-9]\d{0,4})$/;

/**
 * Parses a PROXY header at the start of `buf`: v2 (binary, what Skein's sidecars, haproxy's send-proxy-v2 and
 * Envoy send) or v1 (text, what nginx's stream proxy_protocol and haproxy's send-proxy send). Throws
 * ProxyProtocolError for a signature followed by nonsense.
 */
export function parseProxyHeader(buf: Buffer): ParseResult {
  if (buf.length > 0 && buf[0] === 0x50) return parseV1(buf);
  const n = Math.min(buf.length, SIGNATURE.length);
  for (let i = 0; i < n; i++) if (buf[i] !== SIGNATURE[i]) return { kind: 'none' };
  if (buf.length < HEADER_FIXED) return { kind: 'partial' };
  const verCmd = buf[12] as number;
  if (verCmd >> 4 !== 2) throw new ProxyProtocolError(`version ${verCmd >> 4} is not 2`);
  const len = buf.readUInt16BE(14);
  const total = HEADER_FIXED + len;
  if (buf.length < total) return { kind: 'partial' };
  if (verCmd === CMD_LOCAL) return { kind: 'header', header: { command: 'local' }, length: total };
  if (verCmd !== CMD_PROXY) throw new ProxyProtocolError(`command 0x${(verCmd & 0xf).toString(16)} is neither LOCAL nor PROXY`);
  const fam = buf[13] as number;
  if (fam === FAM_TCP4) {
    if (len < 12) throw new ProxyProtocolError(`TCP/IPv4 address block is ${len} bytes, expected 12`);
    return {
      kind: 'header',
      length: total,
      header: {
        command: 'proxy',
        sourceAddress: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`,
        destinationAddress: `${buf[20]}.${buf[21]}.${buf[22]}.${buf[23]}`,
        sourcePort: buf.readUInt16BE(24),
        destinationPort: buf.readUInt16BE(26),
      },
    };
  }
  if (fam === FAM_TCP6) {
    if (len < 36) throw new ProxyProtocolError(`TCP/IPv6 address block is ${len} bytes, expected 36`);
    return {
      kind: 'header',
      length: total,
      header: {
        command: 'proxy',
        sourceAddress: readIPv6(buf, 16),
        destinationAddress: readIPv6(buf, 32),
        sourcePort: buf.readUInt16BE(48),
        destinationPort: buf.readUInt16BE(50),
      },
    };
  }
  // UNSPEC or a non-TCP family: a valid header without usable addresses (the spec says to ignore them).
  return { kind: 'header', header: { command: 'local' }, length: total };
}

/** `PROXY TCP4|TCP6 <src> <dst> <srcport> <dstport>\r\n` or `PROXY UNKNOWN[ ...]\r\n`. */
function parseV1(buf: Buffer): ParseResult {
  const n = Math.min(buf.length, V1_PREFIX.length);
  for (let i = 0; i < n; i++) if (buf[i] !== V1_PREFIX[i]) return { kind: 'none' };
  const end = buf.indexOf('\r\n', 0, 'latin1');
  if (end === -1 || end + 2 > V1_MAX) {
    if (buf.length < V1_MAX) return { kind: 'partial' };
    throw new ProxyProtocolError(`v1 header has no CRLF within ${V1_MAX} bytes`);
  }
  const length = end + 2;
  const fields = buf.toString('latin1', V1_PREFIX.length, end).split(' ');
  const family = fields[0];
  if (family === 'UNKNOWN') return { kind: 'header', header: { command: 'local' }, length };
  if (family !== 'TCP4' && family !== 'TCP6') throw new ProxyProtocolError(`v1 protocol ${JSON.stringify(family)} is not TCP4, TCP6 or UNKNOWN`);
  if (fields.length !== 5) throw new ProxyProtocolError(`v1 header has ${fields.length - 1} addresses and ports, expected 4`);
  const [, src = '', dst = '', srcPort = '', dstPort = ''] = fields;
  const version = family === 'TCP4' ? 4 : 6;
  for (const [what, ip] of [['source', src], ['destination', dst]] as const) {
    // net.isIP takes IPv6 zone ids (fe80::1%eth0), which the protocol has no place for.
    if (net.isIP(ip) !== version || ip.includes('%')) throw new ProxyProtocolError(`v1 ${what} address ${JSON.stringify(ip)} is not IPv${version}`);
  }
  for (const [what, port] of [['source', srcPort], ['destination', dstPort]] as const) {
    if (!V1_PORT.test(port) || Number(port) > 65535) throw new ProxyProtocolError(`v1 ${what} port ${JSON.stringify(port)} is not 0-65535`);
  }
  return {
    kind: 'header',
    length,
    header: {
      command: 'proxy',
      sourceAddress: version === 6 ? canonicalV6(src) : src,
      destinationAddress: version === 6 ? canonicalV6(dst) : dst,
      sourcePort: Number(srcPort),
      destinationPort: Number(dstPort),
    },
  };
}

/** An IPv6 address as a v2 header's would read: compressed, lower case, IPv4-mapped ones in dotted form. */
function canonicalV6(ip: string): string {
  const b = Buffer.alloc(16);
  writeIPv6(b, 0, ip);
  return readIPv6(b, 0);
}

function writeIPv4(buf: Buffer, at: number, ip: string): void {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new ProxyProtocolError(`"${ip}" is not an IPv4 address`);
  for (let i = 0; i < 4; i++) buf[at + i] = Number(parts[i]) & 0xff;
}

function toV6(ip: string): string {
  return net.isIPv4(ip) ? `::ffff:${ip}` : ip;
}

function writeIPv6(buf: Buffer, at: number, ip: string): void {
  let s = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4 !== null) {
    const p = (v4[1] as string).split('.').map(Number);
    s = `${s.slice(0, v4.index)}${(((p[0] as number) << 8) | (p[1] as number)).toString(16)}:${(((p[2] as number) << 8) | (p[3] as number)).toString(16)}`;
  }
  const [head = '', tail] = s.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new ProxyProtocolError(`"${ip}" is not an IPv6 address`);
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(parseInt(groups[i] as string, 16), at + i * 2);
}

function readIPv6(buf: Buffer, at: number): string {
  // IPv4-mapped addresses come back in dotted form, the way Node reports remoteAddress.
  let mapped = true;
  for (let i = 0; i < 10; i++) if (buf[at + i] !== 0) mapped = false;
  if (mapped && buf[at + 10] === 0xff && buf[at + 11] === 0xff) {
    return `${buf[at + 12]}.${buf[at + 13]}.${buf[at + 14]}.${buf[at + 15]}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + i * 2).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}
