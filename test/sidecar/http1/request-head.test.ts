// Tests the HTTP/1.1 request head serializer: layout, framing choice, and refusing bytes that would break framing.
import { describe, expect, it } from 'vitest';
import { bodyFraming, chunkHeader, InvalidRequestHeadError, requestHead } from '../../../sidecar/http1/request-head.ts';

describe('requestHead', () => {
  it('writes the request line, Host, keep-alive, the forwarded headers in order, and the blank line', () => {
    const head = requestHead('GET', '/a?b=1', 'svc.default:8080', ['x-multi', '1', 'x-multi', '2', 'accept', '*/*'], 'none');
    expect(head).toBe(
      'GET /a?b=1 HTTP/1.1\r\nhost: svc.default:8080\r\nconnection: keep-alive\r\nx-multi: 1\r\nx-multi: 2\r\naccept: */*\r\n\r\n',
    );
  });

  it('adds transfer-encoding: chunked only for a chunked body', () => {
    expect(requestHead('POST', '/', 'h', [], 'chunked')).toContain('\r\ntransfer-encoding: chunked\r\n\r\n');
    expect(requestHead('POST', '/', 'h', ['content-length', '3'], 'length')).not.toContain('transfer-encoding');
  });

  it('keeps latin1 values byte for byte', () => {
    const head = requestHead('GET', '/', 'h', ['x-l1', 'caf\u00e9'], 'none');
    expect(Buffer.from(head, 'latin1').includes(Buffer.from([0x63, 0x61, 0x66, 0xe9]))).toBe(true);
  });

  it('refuses CR/LF in values, bad header names, methods and paths', () => {
    expect(() => requestHead('GET', '/', 'h', ['x-a', 'v\r\nx-evil: 1'], 'none')).toThrow(InvalidRequestHeadError);
    expect(() => requestHead('GET', '/', 'h', ['bad name', 'v'], 'none')).toThrow(/header name "bad name"/);
    expect(() => requestHead('GE T', '/', 'h', [], 'none')).toThrow(/method/);
    expect(() => requestHead('GET', '/a b', 'h', [], 'none')).toThrow(/path/);
    expect(() => requestHead('GET', '/', 'h\n', [], 'none')).toThrow(/Host/);
    try {
      requestHead('GET', '/', 'h', ['x', '\0'], 'none');
    } catch (err) {
      expect((err as InvalidRequestHeadError).code).toBe('SKEIN_HTTP1_REQUEST_HEAD');
    }
  });
});

describe('bodyFraming and chunks', () => {
  it('uses the Content-Length when the list has one, chunked otherwise, none without a body', () => {
    expect(bodyFraming(false, ['content-length', '0'])).toBe('none');
    expect(bodyFraming(true, ['accept', 'x', 'content-length', '5'])).toBe('length');
    expect(bodyFraming(true, ['accept', 'x'])).toBe('chunked');
  });

  it('writes chunk sizes in hex', () => {
    expect(chunkHeader(255)).toBe('ff\r\n');
    expect(chunkHeader(1)).toBe('1\r\n');
  });
});
