"""Does moto server apply a DynamoDB ConditionExpression atomically under concurrent requests?

Plain clients, no exvid code: THREADS botocore clients race optimistic-locking writes on one
item (read `version` strongly, then, all at once, PutItem with `version = :read` as the
condition and `version = :read + 1` as the value). DynamoDB serializes writes per item, so the final version
always equals the number of PutItems answered 200; any shortfall is a lost update (two writes
that both passed the same condition).

Runs two servers, each in its own process on a free 127.0.0.1 port:
  stock      moto's ThreadedMotoServer as it ships
  launcher   infra/devstack/moto_launcher.py (what the tests and the local cloud run)

    .venv/bin/python infra/moto_race.py [--rounds N] [--threads N] [--expect-stock-race]

Prints one line per server; exits 1 if the launcher's moto lost an update (or, with
--expect-stock-race, if stock moto lost none, which would mean this script no longer shows the
race it was written for).
"""
import argparse
import os
import socket
import subprocess
import sys
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = os.path.join(HERE, "devstack", "moto_launcher.py")
STOCK = (
    "import sys\n"
    "sys.setswitchinterval(float(sys.argv[2]))\n"
    "from moto.server import ThreadedMotoServer\n"
    "s = ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False)\n"
    "s.start(); print('ready', flush=True); sys.stdin.read(); s.stop()\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], switch: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, *argv, str(port), str(switch)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"moto_race: {' '.join(argv[:1])} did not start")
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                raise SystemExit(f"moto_race: nothing listens on {port}")
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


def client(endpoint: str):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="eu-central-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # One attempt per call: a retried PutItem could only under-count, never over-count.
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def race(endpoint: str, threads: int, writes: int) -> tuple[int, int, list[tuple[int, int]]]:
    """(writes answered applied, final version, versions two applied writes both expected)."""
    table = f"race-{time.time_ns()}"
    c = client(endpoint)
    c.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    key = {"pk": {"S": "EXERCISE#ex-1"}}
    c.put_item(TableName=table, Item={**key, "version": {"N": "0"}})
    applied: list[int] = []  # the version each applied write expected
    lock = threading.Lock()

    def writer() -> None:
        me = client(endpoint)
        for _ in range(writes):
            read = me.get_item(TableName=table, Key=key, ConsistentRead=True)
            v = int(read["Item"]["version"]["N"])
            # All writers send their conditional write at once, as a burst of concurrent
            # events would: most read the same version, so at most one may pass.
            barrier.wait()
            try:
                me.put_item(
                    TableName=table,
                    Item={**key, "version": {"N": str(v + 1)}, "pad": {"S": "x" * 2000}},
                    ConditionExpression="attribute_exists(#pk) AND #v = :v",
                    ExpressionAttributeNames={"#pk": "pk", "#v": "version"},
                    ExpressionAttributeValues={":v": {"N": str(v)}},
                )
            except ClientError as e:
                if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                continue
            with lock:
                applied.append(v)

    pool = [threading.Thread(target=writer) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    final = int(c.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["version"]["N"])
    twice = sorted({(v, applied.count(v)) for v in applied if applied.count(v) > 1})
    return len(applied), final, twice


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--writes", type=int, default=40, help="writes per thread per round")
    ap.add_argument(
        "--switch-interval",
        type=float,
        default=0.005,
        help="the servers' sys.setswitchinterval (Python's default 0.005 s); a shorter one "
        "switches threads more often, so an unlocked check-then-write loses its race sooner",
    )
    ap.add_argument("--expect-stock-race", action="store_true")
    args = ap.parse_args()
    lost = {}
    # The launcher as the tests run it, with the switch interval set first.
    launcher = (
        "import sys\n"
        "sys.setswitchinterval(float(sys.argv[2]))\n"
        f"exec(compile(open({LAUNCHER!r}).read(), {LAUNCHER!r}, 'exec'))\n"
    )
    for name, argv in (("stock", ["-c", STOCK]), ("launcher", ["-c", launcher])):
        proc, endpoint = start(argv, args.switch_interval)
        try:
            total_applied = total_lost = 0
            examples = []
            for _ in range(args.rounds):
                n, final, twice = race(endpoint, args.threads, args.writes)
                total_applied += n
                total_lost += n - final
                examples += twice[:2]
            lost[name] = total_lost
            print(
                f"moto_race: {name:8} {args.rounds} rounds x {args.threads} writers: "
                f"{total_applied} PutItems answered applied, {total_lost} lost updates"
                + (f" (e.g. expected version, times applied: {examples[:3]})" if examples else "")
            )
        finally:
            proc.stdin.close()
            proc.wait(timeout=20)
    if lost["launcher"]:
        print("moto_race: the launcher's moto lost updates", file=sys.stderr)
        return 1
    if args.expect_stock_race and not lost["stock"]:
        print("moto_race: stock moto lost no update this time (race not shown)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
