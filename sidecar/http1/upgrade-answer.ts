// Reads the answer to an Upgrade request off the first bytes of a connection: a 101 (switch) or an ordinary response.
import { MAX_HEAD_BYTES } from './response-reader.ts';

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** What the bytes so far hold. */
export type UpgradeAnswer =
  | { readonly kind: 'more' }
  /** The head grew past MAX_HEAD_BYTES without ending. */
  | { readonly kind: 'overflow' }
  /** 101: `head` is the whole response head as sent, `rest` the new protocol's first bytes. */
  | { readonly kind: 'switch'; readonly head: Buffer; readonly rest: Buffer }
  /** Not switching: `response` starts at the final response (interim 1xx answers such as 103 dropped). */
  | { readonly kind: 'response'; readonly response: Buffer };

const MORE: UpgradeAnswer = { kind: 'more' };
const OVERFLOW: UpgradeAnswer = { kind: 'overflow' };

export function readUpgradeAnswer(input: Buffer): UpgradeAnswer {
  let buf = input;
  for (;;) {
    const end = buf.indexOf(CRLFCRLF);
    if (end < 0) return buf.length > MAX_HEAD_BYTES ? OVERFLOW : MORE;
    const status = statusOf(buf);
    if (status === 101) return { kind: 'switch', head: buf.subarray(0, end + 4), rest: buf.subarray(end + 4) };
    if (status < 100 || status >= 200) return { kind: 'response', response: buf };
    buf = buf.subarray(end + 4);
  }
}

/** The status code of the response head at the start of `buf` (`HTTP/1.1 101 ...`), or 0 when it is not one. */
function statusOf(buf: Buffer): number {
  if (buf.length < 12 || buf.toString('latin1', 0, 5) !== 'HTTP/') return 0;
  const sp = buf.indexOf(0x20);
  if (sp < 0 || sp + 4 > buf.length) return 0;
  const code = Number(buf.toString('latin1', sp + 1, sp + 4));
  return Number.isInteger(code) ? code : 0;
}
