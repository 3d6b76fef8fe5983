"""Runs moto server on 127.0.0.1:PORT until standard input closes.

The Rust side keeps the pipe to our stdin open for as long as it needs moto; when that process
ends (normally, by panic or by kill), the pipe closes and moto stops with it, so no test or
devstack run leaves a moto server behind.
"""
import sys

from moto.server import ThreadedMotoServer


def main() -> None:
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
