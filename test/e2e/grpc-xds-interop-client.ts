// Child process of grpc-xds-interop.test.ts: a proxyless gRPC client (grpc-js-xds) that makes calls on request.
// GRPC_XDS_BOOTSTRAP_CONFIG is in this process's environment from the start, so register() sees it.
import * as grpc from '@grpc/grpc-js';
import grpcXds from '@grpc/grpc-js-xds';
import { loadSync } from '@grpc/proto-loader';

export type ClientRequest = { type: 'call'; count: number; deadlineMs: number } | { type: 'stop' };
export type ClientReply = { type: 'ready' } | { type: 'result'; names: string[]; errors: string[] };

interface EchoClient extends grpc.Client {
  Echo(
    req: { message: string },
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: { server: string }) => void,
  ): void;
}

const [protoPath, target] = process.argv.slice(2);
if (!protoPath || !target) {
  process.stderr.write('usage: grpc-xds-interop-client.ts ECHO_PROTO xds:///host:port\n');
  process.exit(2);
}
grpcXds.register();
const pkg = grpc.loadPackageDefinition(loadSync(protoPath, { keepCase: true })) as unknown as {
  skein: { e2e: { Echo: new (target: string, creds: grpc.ChannelCredentials) => EchoClient } };
};
const client = new pkg.skein.e2e.Echo(target, grpc.credentials.createInsecure());

function call(deadlineMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    client.Echo({ message: 'hi' }, { deadline: Date.now() + deadlineMs }, (err, res) => {
      if (err) reject(new Error(`${err.code} ${err.details}`));
      else resolve(res?.server ?? '');
    });
  });
}

process.on('message', async (msg: ClientRequest) => {
  if (msg.type === 'stop') {
    client.close();
    process.disconnect?.();
    return;
  }
  const names: string[] = [];
  const errors: string[] = [];
  for (let i = 0; i < msg.count; i++) {
    try {
      names.push(await call(msg.deadlineMs));
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  process.send?.({ type: 'result', names, errors } satisfies ClientReply);
});
process.on('disconnect', () => {
  client.close();
  setTimeout(() => process.exit(0), 100).unref();
});
process.send?.({ type: 'ready' } satisfies ClientReply);
