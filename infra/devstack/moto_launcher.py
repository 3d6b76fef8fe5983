"""Runs moto server on 127.0.0.1:PORT until standard input closes.

    moto_launcher.py PORT [THROTTLE]

THROTTLE (0 to 1, default 0): the share of DynamoDB item reads and writes answered with
ProvisionedThroughputExceededException, as a throttled table does (the load test's fault).

The Rust side keeps the pipe to our stdin open for as long as it needs moto; when that process
ends (normally, by panic or by kill), the pipe closes and moto stops with it, so no test or
devstack run leaves a moto server behind.
"""
import sys
import threading

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


# DynamoDB applies each write atomically: a ConditionExpression is checked and the item written
# as one step, so of two writes expecting the same version exactly one passes. moto 5.2's
# Table.put_item (and update_item, delete_item, TransactWriteItems) reads the item, evaluates
# the condition and then stores, with nothing held in between: its threaded server lets two
# requests pass the same condition (a lost update that DynamoDB never allows; shown by
# infra/moto_race.py, and by a store conformance test that failed on a busy machine). One lock
# around every DynamoDB action makes each request atomic, as DynamoDB's per-item serialization
# is for the single-table workloads the tests run (moto's other services are left concurrent).
DYNAMODB_LOCK = threading.RLock()


# What a throttled table refuses: item reads and writes, not the control plane (creating the
# table, streams) that the local cloud needs to start.
THROTTLED_ACTIONS = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
    "BatchWriteItem", "TransactGetItems", "TransactWriteItems",
}


def dynamodb_atomic(throttle: float = 0.0) -> None:
    import json
    import random

    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    def call_action(self):
        if throttle > 0 and random.random() < throttle:
            target = self.headers.get("X-Amz-Target", "")
            if target.rsplit(".", 1)[-1] in THROTTLED_ACTIONS:
                # DynamoDB's own answer: 400, retryable by every SDK's standard retry mode.
                body = {
                    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                    "message": "The level of configured provisioned throughput for the table was exceeded.",
                }
                return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(body)
        with DYNAMODB_LOCK:
            return original(self)

    DynamoHandler.call_action = call_action


def main() -> None:
    s3_result_roots()
    port = int(sys.argv[1])
    throttle = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    dynamodb_atomic(throttle)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
