// A plain HTTP/1.1 GET with an explicit Host header through a sidecar's outbound listener, for the whole-sidecar tests.
import { request } from 'node:http';

export function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('no response through the outbound listener within 5 s')));
    req.on('error', reject);
    req.end();
  });
}
