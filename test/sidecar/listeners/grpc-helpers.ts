// gRPC test helpers on real @grpc/grpc-js: a bytes-in, bytes-out service definition, an echo server, a unary call.
import * as grpc from '@grpc/grpc-js';

export const bytes = (b: Buffer): Buffer => b;

function method(path: string, responseStream = false, requestStream = false): grpc.MethodDefinition<Buffer, Buffer> {
  return { path, requestStream, responseStream, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes };
}

/** A hand-written service definition (no .proto): /demo.Echo/Say, /Find, /Admin (unary), /Watch (server streaming), /Chat (bidi). */
export const ECHO_SERVICE: grpc.ServiceDefinition = {
  Say: method('/demo.Echo/Say'),
  Find: method('/demo.Echo/Find'),
  Admin: method('/demo.Echo/Admin'),
  Watch: method('/demo.Echo/Watch', true),
  Chat: method('/demo.Echo/Chat', true, true),
};

export async function listenGrpc(server: grpc.Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
}

/** A server whose Say and Admin answer `<request> peer=<x-skein-peer-identity>`, Chat echoes each message; others are UNIMPLEMENTED. */
export async function startGrpcEcho(): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  const echo = (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
    cb(null, Buffer.from(`${String(call.request)} peer=${String(call.metadata.get('x-skein-peer-identity')[0] ?? '')}`));
  const chat = (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => call.write(Buffer.from(`re: ${String(m)}`)));
    call.on('end', () => call.end());
  };
  const { Say, Admin, Chat } = ECHO_SERVICE as Record<string, grpc.MethodDefinition<Buffer, Buffer>>;
  server.addService({ Say, Admin, Chat } as grpc.ServiceDefinition, { Say: echo, Admin: echo, Chat: chat });
  return { server, port: await listenGrpc(server) };
}

export function unary(client: grpc.Client, path: string, body: string): Promise<{ error?: grpc.ServiceError; reply?: string }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, bytes, bytes, Buffer.from(body), (error, reply) => {
      resolve(error ? { error: error as grpc.ServiceError } : { reply: String(reply) });
    });
  });
}

/** Sends `words` on a bidi /demo.Echo/Chat, each after the reply to the one before; resolves the replies and the final status. */
export async function chat(client: grpc.Client, words: readonly string[]): Promise<{ replies: string[]; code: grpc.status }> {
  const call = client.makeBidiStreamRequest('/demo.Echo/Chat', bytes, bytes);
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('error', () => {});
  const replies: string[] = [];
  for (const word of words) {
    const reply = new Promise<string | undefined>((resolve) => {
      call.once('data', (m: Buffer) => resolve(String(m)));
      void status.then(() => resolve(undefined));
    });
    call.write(Buffer.from(word));
    const r = await reply;
    if (r === undefined) break;
    replies.push(r);
  }
  call.end();
  return { replies, code: (await status).code };
}
