"""Runs moto server on 127.0.0.1:PORT until standard input closes.

The Rust side keeps the pipe to our stdin open for as long as it needs moto; when that process
ends (normally, by panic or by kill), the pipe closes and moto stops with it, so no test or
devstack run leaves a moto server behind.
"""
import sys

from moto.server import ThreadedMotoServer

# S3 answers ListParts under <ListPartsResult> (as documented); moto 5.2 serializes it under
# <ListPartsResponse>. botocore does not look at the root, the AWS SDK for Rust does and fails.
S3_RESULT_ROOTS = {"ListParts": "ListPartsResult"}


def s3_result_roots() -> None:
    from moto.core.serialize import S3Serializer

    original = S3Serializer._serialized_result_to_response

    def renamed(self, resp, result, shape, serialized_result):
        resp = original(self, resp, result, shape, serialized_result)
        name = self.operation_model.name
        root = S3_RESULT_ROOTS.get(name)
        body = resp.get("body")
        if root and isinstance(body, (str, bytes)):
            wrong = f"{name}Response"
            if isinstance(body, bytes):
                body = body.replace(wrong.encode(), root.encode())
            else:
                body = body.replace(wrong, root)
            resp["body"] = body
        return resp

    S3Serializer._serialized_result_to_response = renamed


def main() -> None:
    s3_result_roots()
    port = int(sys.argv[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
