"""A webhook subscriber that verifies every delivery with the Standard Webhooks reference
library (PyPI `standardwebhooks`), for trying exvid's events locally and for the tests.

    .venv/bin/python infra/devstack/webhook_subscriber.py --port 8790 --secret whsec_...

Prints one JSON line per delivery: {"id", "type", "exercise_id", "upload_id", "verified",
"attempt", "status"}. `--fail-first N` answers 500 to the first N attempts of each id (to see
retries), `--hang-on TYPE` never answers deliveries of that event type (to see that a hanging
subscriber delays nobody else). GET /deliveries returns every line so far as a JSON array.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--hang-on", default="")
    args = parser.parse_args()
    webhook = Webhook(args.secret)
    lock = threading.Lock()
    attempts = {}
    deliveries = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status, body=b""):
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with lock:
                body = json.dumps(deliveries).encode()
            self.answer(200, body)

        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            try:
                payload = webhook.verify(data, headers)
                verified = True
            except WebhookVerificationError:
                payload, verified = {}, False
            msg_id = self.headers.get("webhook-id", "")
            with lock:
                attempts[msg_id] = attempts.get(msg_id, 0) + 1
                attempt = attempts[msg_id]
            kind = payload.get("type", "")
            if kind and kind == args.hang_on:
                time.sleep(3600)
            status = 401 if not verified else (500 if attempt <= args.fail_first else 204)
            line = {
                "id": msg_id,
                "type": kind,
                "exercise_id": payload.get("data", {}).get("exercise_id"),
                "upload_id": payload.get("data", {}).get("upload_id"),
                "verified": verified,
                "attempt": attempt,
                "status": status,
            }
            with lock:
                deliveries.append(line)
                # One thread prints at a time: interleaved lines would not parse.
                print(json.dumps(line), flush=True)
            self.answer(status)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(json.dumps({"listening": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
