// A demo workload: one small HTTP service (web, app, kv or hostname) that calls its dependencies through its sidecar.
import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    role: { type: 'string' },
    name: { type: 'string' },
    ip: { type: 'string' },
    port: { type: 'string', default: '8080' },
    outbound: { type: 'string' },
  },
});
const role = values.role ?? 'hostname';
const replica = values.name ?? role;
const ip = values.ip ?? '127.0.0.1';
const port = Number(values.port);
const [outHost, outPort] = (values.outbound ?? '127.0.0.1:15001').split(':') as [string, string];
const agent = new Agent({ keepAlive: true });

/** Calls another service through this workload's outbound sidecar, addressing it by Host like an HTTP proxy. */
function callMesh(
  host: string,
  path: string,
  method = 'GET',
  body?: string,
): Promise<{ status: number; body: string; peer: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: outHost, port: Number(outPort), path, method, agent, headers: { host, ...(body ? { 'content-type': 'text/plain' } : {}) } },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (data += chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: data, peer: String(res.headers['x-replica'] ?? ''), headers: res.headers }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

const store = new Map<string, string>();

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  res.setHeader('x-replica', replica);
  const url = new URL(req.url ?? '/', 'http://x');
  if (role === 'hostname') {
    res.end(`${replica}\n`);
    return;
  }
  if (role === 'kv') {
    const key = url.pathname.slice(1) || 'default';
    if (req.method === 'PUT') {
      let body = '';
      for await (const chunk of req) body += chunk;
      store.set(key, body);
      res.end('stored\n');
    } else {
      res.end(`${store.get(key) ?? ''}\n`);
    }
    return;
  }
  if (role === 'app') {
    const key = `visits-${Math.floor(Math.random() * 4)}`;
    const current = await callMesh('kv.demo', `/${key}`);
    const next = String(Number(current.body.trim() || '0') + 1);
    const put = await callMesh('kv.demo', `/${key}`, 'PUT', next);
    res.statusCode = current.status === 200 && put.status === 200 ? 200 : 502;
    res.setHeader('x-kv-replica', current.peer);
    res.end(`${replica}: ${key}=${next} (kv ${current.peer})\n`);
    return;
  }
  if (role === 'web') {
    const app = await callMesh('app.demo', '/');
    res.statusCode = app.status;
    res.setHeader('x-app-replica', app.peer);
    res.setHeader('x-kv-replica', String(app.headers['x-kv-replica'] ?? ''));
    res.end(`web ${replica} -> ${app.body}`);
    return;
  }
  res.statusCode = 404;
  res.end('unknown role\n');
}

const server = createServer((req, res) => {
  handle(req, res).catch((err: Error) => {
    res.statusCode = 502;
    res.end(`${replica}: dependency failed: ${err.message}\n`);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(port, ip, () => process.send?.({ type: 'listening', replica }));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
