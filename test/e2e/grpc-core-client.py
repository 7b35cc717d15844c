# gRPC C-core's own xDS client (through Python's grpcio): calls xds:///<target> and prints which servers answered, as JSON.
# Usage: GRPC_XDS_BOOTSTRAP=FILE python3 grpc-core-client.py TARGET COUNT [DEADLINE_S]
# Each run is a new channel, so a new xDS client: it resolves the target from scratch through the control plane.
import json
import sys

import grpc


def echo_request(message: bytes) -> bytes:
    # skein.e2e.EchoRequest { string message = 1; }, encoded by hand: the test has no generated Python code.
    return b"\x0a" + bytes([len(message)]) + message


def server_of(reply: bytes) -> str:
    # skein.e2e.EchoReply { string server = 1; ... }: field 1 comes first and is short.
    if len(reply) < 2 or reply[0] != 0x0A:
        return "?"
    return reply[2 : 2 + reply[1]].decode()


def main() -> None:
    target, count = sys.argv[1], int(sys.argv[2])
    deadline = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    names, errors = [], []
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/skein.e2e.Echo/Echo")
        for _ in range(count):
            try:
                names.append(server_of(call(echo_request(b"hi"), timeout=deadline)))
            except grpc.RpcError as e:
                errors.append(f"{e.code().name}: {e.details()}")
    print(json.dumps({"names": names, "errors": errors}), flush=True)


main()
