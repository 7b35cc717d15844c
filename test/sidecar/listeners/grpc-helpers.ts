// gRPC test helpers on real @grpc/grpc-js: a bytes-in, bytes-out service definition, an echo server, a unary call.
import * as grpc from '@grpc/grpc-js';

export const bytes = (b: Buffer): Buffer => b;

function method(path: string, responseStream = false): grpc.MethodDefinition<Buffer, Buffer> {
  return { path, requestStream: false, responseStream, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes };
}

/** A hand-written service definition (no .proto): /demo.Echo/Say, /Find, /Admin (unary) and /Watch (server streaming). */
export const ECHO_SERVICE: grpc.ServiceDefinition = {
  Say: method('/demo.Echo/Say'),
  Find: method('/demo.Echo/Find'),
  Admin: method('/demo.Echo/Admin'),
  Watch: method('/demo.Echo/Watch', true),
};

export async function listenGrpc(server: grpc.Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
}

/** A server whose Say and Admin answer `<request> peer=<x-skein-peer-identity>`; other methods are UNIMPLEMENTED. */
export async function startGrpcEcho(): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  const echo = (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
    cb(null, Buffer.from(`${String(call.request)} peer=${String(call.metadata.get('x-skein-peer-identity')[0] ?? '')}`));
  server.addService({ Say: ECHO_SERVICE.Say as grpc.MethodDefinition<Buffer, Buffer>, Admin: ECHO_SERVICE.Admin as grpc.MethodDefinition<Buffer, Buffer> }, { Say: echo, Admin: echo });
  return { server, port: await listenGrpc(server) };
}

export function unary(client: grpc.Client, path: string, body: string): Promise<{ error?: grpc.ServiceError; reply?: string }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, bytes, bytes, Buffer.from(body), (error, reply) => {
      resolve(error ? { error: error as grpc.ServiceError } : { reply: String(reply) });
    });
  });
}
