"""A reverse proxy for the AWS API that counts calls and injects faults.

It sits between the agent and moto on 127.0.0.1. Each request is counted by its
``X-Amz-Target`` (JSON protocols: ECR, ECR Public) or ``Action`` (query protocol: STS).
ECR Public's token call, which moto lacks, is answered by the proxy itself.
``expires_in`` rewrites ``expiresAt`` in token answers, because moto always returns
2015-01-01 and a test of the renewal loop needs tokens that are still valid.
``rotate_passwords`` gives every token answer new passwords (moto's password with a
serial number appended), so each renewal changes what the agent writes.
"""

import base64
import http.client
import json
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = (
    "throttle",  # ECR's throttling error: HTTP 400, JSON, ThrottlingException
    "500",
    "503",
    "html",  # an HTML error page with status 502
    "forbidden-text",  # a non-JSON 403, as a proxy with an expired token sends
    "reset",  # the connection is closed without an answer
    "hang",  # the connection is accepted and never answered
    "slow",  # the answer arrives, a byte at a time
    "reflect",  # HTTP 400 whose error message quotes the request headers, as some proxies do
    "empty",  # HTTP 200 with no authorizationData entry
    "garbage",  # HTTP 200 whose authorizationToken is not base64 of user:password
)


class AwsProxy:
    def __init__(
        self, upstream: str, expires_in: float | None = None, rotate_passwords: bool = False
    ):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.expires_in = expires_in
        self.rotate_passwords = rotate_passwords
        self.calls: Counter[str] = Counter()
        self.call_times: list[tuple[float, str]] = []  # (time.monotonic(), call name)
        self.issued: list[str] = []  # every password handed out, oldest first
        self.serial = 0
        self.stopped = threading.Event()
        self.fault: str | None = None
        self.fault_count = 0  # faults left to inject; a negative number means always
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()

    def fail(self, fault: str | None, count: int = -1) -> None:
        """Inject ``fault`` into the next ``count`` calls (every call if negative)."""
        assert fault is None or fault in FAULTS, fault
        with self.lock:
            self.fault, self.fault_count = fault, count

    def token_calls(self) -> int:
        return sum(n for name, n in self.calls.items() if name.endswith("GetAuthorizationToken"))

    def token_call_times(self) -> list[float]:
        """Return the monotonic times of the token calls received so far."""
        with self.lock:
            return [at for at, name in self.call_times if name.endswith("GetAuthorizationToken")]

    def last_password(self) -> str | None:
        with self.lock:
            return self.issued[-1] if self.issued else None

    def _next_fault(self) -> str | None:
        with self.lock:
            if self.fault is None or self.fault_count == 0:
                return None
            if self.fault_count > 0:
                self.fault_count -= 1
            return self.fault

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                name = self.headers.get("X-Amz-Target") or _query_action(body)
                with proxy.lock:
                    proxy.calls[name] += 1
                    proxy.call_times.append((time.monotonic(), name))
                fault = proxy._next_fault()
                if fault:
                    self._inject(fault, body)
                    return
                if name == PUBLIC_TARGET:
                    status, headers, answer = 200, {}, _public_token(time.time() + 12 * 3600)
                else:
                    status, headers, answer = proxy._forward(self, body)
                if name.endswith("GetAuthorizationToken") and status == 200:
                    answer = proxy._rewrite_token(answer)
                self._send(status, answer, headers.get("Content-Type", "application/json"))

            do_GET = do_POST

            def _send(self, status, body: bytes, content_type: str, slow=False):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not slow:
                    self.wfile.write(body)
                    return
                for index in range(len(body)):
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                    if proxy.stopped.wait(0.5):
                        return

            def _inject(self, fault, body: bytes):
                if fault == "throttle":
                    error = {"__type": "ThrottlingException", "message": "Rate exceeded"}
                    self._send(400, json.dumps(error).encode(), "application/x-amz-json-1.1")
                elif fault in ("500", "503"):
                    error = {"__type": "ServerException", "message": "Service unavailable"}
                    self._send(int(fault), json.dumps(error).encode(), "application/x-amz-json-1.1")
                elif fault == "html":
                    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                    self._send(502, page, "text/html")
                elif fault == "forbidden-text":
                    self._send(
                        403, b"Forbidden: the security token included is expired", "text/plain"
                    )
                elif fault == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.close_connection = True
                elif fault == "hang":
                    proxy.stopped.wait(3600)
                elif fault == "slow":
                    error = {"__type": "ServerException", "message": "slow"}
                    self._send(
                        500, json.dumps(error).encode(), "application/x-amz-json-1.1", slow=True
                    )
                elif fault in ("empty", "garbage"):
                    data = [] if fault == "empty" else _garbage_entries(self.headers, body)
                    answer = json.dumps({"authorizationData": data}).encode()
                    self._send(200, answer, "application/x-amz-json-1.1")
                elif fault == "reflect":
                    quoted = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
                    error = {"__type": "InvalidRequestException", "message": quoted}
                    self._send(400, json.dumps(error).encode(), "application/x-amz-json-1.1")

        return Handler

    def _rewrite_token(self, answer: bytes) -> bytes:
        try:
            document = json.loads(answer)
        except ValueError:
            return answer
        data = document.get("authorizationData")
        if isinstance(data, dict):
            entries = [data]  # ECR Public's answer holds one entry, not a list
        elif isinstance(data, list):
            entries = data
        else:
            entries = []
        for entry in entries:
            if self.expires_in is not None:
                entry["expiresAt"] = time.time() + self.expires_in
            if self.rotate_passwords:
                user, _, password = base64.b64decode(entry["authorizationToken"]).partition(b":")
                with self.lock:
                    self.serial += 1
                    password += f"-{self.serial}".encode()
                entry["authorizationToken"] = base64.b64encode(user + b":" + password).decode()
            token = base64.b64decode(entry.get("authorizationToken", ""))
            with self.lock:
                self.issued.append(token.partition(b":")[2].decode())
        return json.dumps(document).encode()

    def _forward(self, handler, body):
        connection = http.client.HTTPConnection(
            self.upstream.hostname, self.upstream.port, timeout=30
        )
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        headers["Host"] = f"{self.upstream.hostname}:{self.upstream.port}"
        connection.request(handler.command, handler.path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        connection.close()
        return response.status, dict(response.getheaders()), answer


PUBLIC_TARGET = "SpencerFrontendService.GetAuthorizationToken"
PUBLIC_PASSWORD = "STAND-IN-ECR-PUBLIC-PASSWORD"


def _public_token(expires_at: float) -> bytes:
    """Answer ecr-public's GetAuthorizationToken, which moto does not serve."""
    token = base64.b64encode(f"AWS:{PUBLIC_PASSWORD}".encode()).decode()
    data = {"authorizationToken": token, "expiresAt": expires_at}
    return json.dumps({"authorizationData": data}).encode()


def _garbage_entries(headers, body: bytes) -> list[dict]:
    """Return one entry per requested registry whose token is not base64."""
    region = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", headers.get("Authorization", ""))
    region_name = region[1] if region else "us-east-1"
    try:
        accounts = json.loads(body or b"{}").get("registryIds") or []
    except ValueError:
        accounts = []
    return [
        {
            "authorizationToken": "not base64!",
            "expiresAt": time.time() + 3600,
            "proxyEndpoint": f"https://{account}.dkr.ecr.{region_name}.amazonaws.com",
        }
        for account in accounts
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _query_action(body: bytes) -> str:
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return fields.get("Action", ["unknown"])[0]
