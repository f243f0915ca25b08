"""The ECR API over TLS for the benchmarks: moto behind a counting proxy.

Runs inside the benchmark's network namespace, where the hosts file maps
``api.ecr.<region>.amazonaws.com`` to ``--address``. It serves HTTPS there with a
certificate from the rig's CA and forwards each request to moto's plain-HTTP listener,
through tests.aws_proxy.AwsProxy, which rewrites ``expiresAt`` (moto always returns
2015-01-01) to now + ``expires_in``. Every call is counted by client (ecr-agent, the
AWS CLI, docker-credential-ecr-login, the floor script) and by the first word of its
User-Agent header, which carries the SDK version.

ECR hands out a new password with every token. To do the same, each token gets moto's
password padded to 72 bytes plus a serial number. The registry checks passwords with
bcrypt, which reads only the first 72 bytes, so every such password is accepted by a
registry whose htpasswd holds the padded password (``registry_password``).

A plain-HTTP control listener on ``--control`` (127.0.0.1 inside the namespace) serves
``GET /counts``, ``POST /reset`` and ``POST /settings`` with JSON keys ``expires_in``,
``delay`` (seconds each token call is held before it is answered, a stand-in for
network and service latency) and ``cache``. With ``cache`` true, a token call is
answered from the first answer moto gave for the same region and body, rewritten as
above. moto handles requests one at a time under its GIL, a few milliseconds each, so
without the cache 20 concurrent calls queue in moto and the emulator, not in the client.
"""

import argparse
import base64
import json
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.aws_proxy import AwsProxy

CLIENT_MARKERS = (
    ("ecr-agent/", "ecr-agent"),
    ("bench-floor/", "floor"),
    ("aws-cli/", "aws-cli"),
    # docker-credential-ecr-login 0.6.0 sends aws-sdk-go-v2's User-Agent with no name of
    # its own, and it is the only Go client in the benchmarks.
    ("aws-sdk-go", "ecr-login"),
)


BCRYPT_BYTES = 72  # bcrypt ignores password bytes past the 72nd
PADDING = "."


def registry_password(moto_password: str) -> str:
    """Return the password to put in the registry's htpasswd for every rotated token."""
    return moto_password.ljust(BCRYPT_BYTES, PADDING)[:BCRYPT_BYTES]


class RotatingProxy(AwsProxy):
    """AwsProxy whose token answers carry a new password each time, as ECR's do."""

    def __init__(self, upstream: str, expires_in: float):
        super().__init__(upstream, expires_in=expires_in)
        self.tokens_issued = 0

    def _rewrite_token(self, answer: bytes) -> bytes:
        answer = super()._rewrite_token(answer)
        try:
            document = json.loads(answer)
        except ValueError:
            return answer
        data = document.get("authorizationData")
        entries = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        for entry in entries:
            token = base64.b64decode(entry["authorizationToken"]).decode()
            user, _, password = token.partition(":")
            with self.lock:
                self.tokens_issued += 1
                password = f"{registry_password(password)}-{self.tokens_issued}"
            entry["authorizationToken"] = base64.b64encode(f"{user}:{password}".encode()).decode()
        return json.dumps(document).encode()


def client_name(user_agent: str) -> str:
    """Name the client that sent a request, from its User-Agent header."""
    for marker, name in CLIENT_MARKERS:
        if marker in user_agent:
            return name
    return "other"


class Emulator:
    """The counting TLS front and its settings, shared by the request threads."""

    def __init__(self, upstream: str, expires_in: float):
        self.proxy = RotatingProxy(upstream, expires_in=expires_in)
        self.delay = 0.0
        self.cache = False
        self.answers: dict[tuple[str, bytes], bytes] = {}
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.user_agents: Counter[str] = Counter()

    def handler(self):
        emulator = self
        base = self.proxy._handler()

        class CountingHandler(base):
            def do_POST(self):
                user_agent = self.headers.get("User-Agent", "")
                target = self.headers.get("X-Amz-Target", "")
                sdk = user_agent.split(" ", 1)[0]
                with emulator.lock:
                    emulator.calls[f"{client_name(user_agent)} {sdk} {target}"] += 1
                    emulator.user_agents[user_agent] += 1
                    delay, cache = emulator.delay, emulator.cache
                if not target.endswith("GetAuthorizationToken"):
                    super().do_POST()
                elif cache:
                    self._answer_from_cache(delay)
                else:
                    time.sleep(delay)
                    super().do_POST()

            def _answer_from_cache(self, delay: float) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = (_credential_scope(self.headers.get("Authorization", "")), body)
                with emulator.lock:
                    answer = emulator.answers.get(key)
                if answer is None:
                    status, _, answer = emulator.proxy._forward(self, body)
                    if status != 200:
                        self._send(status, answer, "application/x-amz-json-1.1")
                        return
                    with emulator.lock:
                        emulator.answers[key] = answer
                time.sleep(delay)
                answer = emulator.proxy._rewrite_token(answer)
                self._send(200, answer, "application/x-amz-json-1.1")

            do_GET = do_POST

        return CountingHandler

    def counts(self) -> dict:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "user_agents": dict(self.user_agents),
                "expires_in": self.proxy.expires_in,
                "delay": self.delay,
                "cache": self.cache,
            }

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.user_agents.clear()

    def configure(self, settings: dict) -> None:
        with self.lock:
            if "expires_in" in settings:
                self.proxy.expires_in = float(settings["expires_in"])
            if "delay" in settings:
                self.delay = float(settings["delay"])
            if "cache" in settings:
                self.cache = bool(settings["cache"])


def _credential_scope(authorization: str) -> str:
    """Return the ``Credential=`` part of a SigV4 Authorization header: key, date, region."""
    for part in authorization.replace(",", " ").split():
        if part.startswith("Credential="):
            return part.split("/", 2)[-1]
    return ""


def control_handler(emulator: Emulator):
    class ControlHandler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def do_GET(self):
            self._answer(emulator.counts())

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)) or 0)
            if self.path == "/reset":
                emulator.reset()
            elif self.path == "/settings":
                emulator.configure(json.loads(body or b"{}"))
            self._answer(emulator.counts())

        def _answer(self, document):
            data = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ControlHandler


class NoDelayServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections send each write at once.

    The handler writes the headers and the body of a response separately. With Nagle's
    algorithm on, the body then waits for the client's ACK of the headers, which Linux
    delays by up to 40 ms on a kept-alive connection. AWS endpoints show no such stall.
    """

    daemon_threads = True

    def get_request(self):
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


def serve_tls(emulator: Emulator, address: str, port: int, cert: str, key: str):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = NoDelayServer((address, port), emulator.handler())
    # The handshake runs in the request thread on the first read, not in the accept loop.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    return server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="moto's URL, http://HOST:PORT")
    parser.add_argument("--address", required=True, help="address of the TLS listener")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", help="TLS certificate; without it the listener is plain HTTP")
    parser.add_argument("--key")
    parser.add_argument("--control", type=int, required=True, help="control port on 127.0.0.1")
    parser.add_argument("--expires-in", type=float, default=12 * 3600, help="token lifetime, s")
    args = parser.parse_args(argv)

    emulator = Emulator(args.upstream, args.expires_in)
    if args.cert:
        tls = serve_tls(emulator, args.address, args.port, args.cert, args.key)
    else:
        tls = NoDelayServer((args.address, args.port), emulator.handler())
    control = ThreadingHTTPServer(("127.0.0.1", args.control), control_handler(emulator))
    control.daemon_threads = True
    for server in (tls, control):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if args.cert else "http"
    print(f"serving {scheme}://{args.address}:{args.port}", flush=True)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    for server in (tls, control):
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
