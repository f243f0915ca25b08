"""A local ECR API for demos and benchmarks: moto behind a proxy that sets real expiry times.

moto answers every GetAuthorizationToken with expiresAt 2015-01-01; the proxy rewrites
it to now + 12 hours, as ECR does. Run ``python -m tests.ecr_emulator``; it prints its
URL on the first line and serves until it is terminated.
"""

import argparse
import signal
import sys
import threading

from moto.server import ThreadedMotoServer

from tests.aws_proxy import AwsProxy, free_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expires-in", type=float, default=12 * 3600, help="token lifetime, s")
    args = parser.parse_args()

    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    proxy = AwsProxy(f"http://127.0.0.1:{moto_port}", expires_in=args.expires_in).start()
    print(proxy.url, flush=True)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    proxy.stop()
    moto.stop()
    print(f"served {proxy.token_calls()} token calls", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
