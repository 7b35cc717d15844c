# gRPC C-core (Python grpcio) calls through a Skein sidecar's outbound port; prints one JSON object of what happened.
import concurrent.futures
import json
import sys

import grpc

port, authority, refused_authority = sys.argv[1], sys.argv[2], sys.argv[3]
options = [('grpc.default_authority', authority), ('grpc.max_receive_message_length', 16 << 20), ('grpc.max_send_message_length', 16 << 20)]
channel = grpc.insecure_channel(f'127.0.0.1:{port}', options=options)
say = channel.unary_unary('/demo.Echo/Say')
chat = channel.stream_stream('/demo.Echo/Chat')
out = {}
out['unary'] = say(b'hello from c-core', timeout=10).decode()
big = bytes(range(256)) * (3 * 4096)  # 3 MiB: several HTTP/2 flow-control windows each way
echoed = say(big, timeout=20)
out['big_ok'] = echoed == big
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    answers = list(pool.map(lambda i: say(b'%d' % i, timeout=20).decode(), range(200)))
out['concurrent_ok'] = answers == [str(i) for i in range(200)]
out['chat'] = [len(m) for m in chat(iter([b'a', b'b' * 200_000, b'c']), timeout=20)]
try:
    channel.unary_unary('/demo.Echo/Find')(b'k1', timeout=10)
    out['find'] = 'OK'
except grpc.RpcError as e:
    out['find'] = [e.code().name, e.details()]
refused = grpc.insecure_channel(f'127.0.0.1:{port}', options=[('grpc.default_authority', refused_authority)])
try:
    refused.unary_unary('/demo.Echo/Say')(b'x', timeout=10)
    out['refused'] = 'OK'
except grpc.RpcError as e:
    out['refused'] = [e.code().name, e.details(), dict(e.trailing_metadata() or ()).get('x-skein-reason')]
print(json.dumps(out))
