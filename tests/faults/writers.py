"""Other writers of a Docker config file: the Docker CLI's ``docker login`` and a stand-in.

``docker login`` verifies the login with the daemon before it saves the file, so it is
pointed at FakeDaemon, which accepts every login. The Docker CLI's save (docker/cli,
``cli/config/configfile/file.go``, ``ConfigFile.Save``) writes a temporary file in the
same directory and renames it over the old one, without a lock and without fsync.
python_login does the same for machines without the Docker CLI.
"""

import base64
import json
import os
import random
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEBIAN_DOCKER = Path("/usr/bin/docker")  # the docker.io package's CLI


class FakeDaemon:
    """A Docker daemon API for ``docker login``: ping and auth succeed, info is missing."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _DaemonHandler)
        self.server.daemon_threads = True
        self.url = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class _DaemonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _reply(self, status: int, body: bytes, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Api-Version", "1.41")
        self.send_header("OSType", "linux")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if self.path.endswith("/_ping"):
            self._reply(200, b"OK", "text/plain")
        else:
            self._reply(404, b'{"message": "not served by the fake daemon"}')

    do_HEAD = do_GET

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/auth"):
            self._reply(200, b'{"Status": "Login Succeeded", "IdentityToken": ""}')
        else:
            self._reply(404, b'{"message": "not served by the fake daemon"}')


def docker_login(config_dir: Path, daemon: FakeDaemon, host: str, password: str) -> None:
    """Run the Debian Docker CLI's ``docker login`` for ``host`` with ``config_dir``."""
    env = {
        # No docker-credential-* helper on PATH, so the CLI stores into config.json.
        "PATH": "/usr/bin:/bin",
        "HOME": str(config_dir.parent),
        "DOCKER_CONFIG": str(config_dir),
        "DOCKER_HOST": daemon.url,
    }
    command = [str(DEBIAN_DOCKER), "login", "--username", "AWS", "--password-stdin", host]
    result = subprocess.run(
        command, input=password, env=env, capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker login {host} failed: {result.stderr}")


def python_login(config_dir: Path, host: str, password: str, pause=0.005) -> None:
    """Add ``host`` as the Docker CLI's save does: read, merge, temporary file, rename."""
    path = config_dir / "config.json"
    try:
        document = json.loads(path.read_bytes() or b"{}")
    except FileNotFoundError:
        document = {}
    auth = base64.b64encode(f"AWS:{password}".encode()).decode()
    document.setdefault("auths", {})[host] = {"auth": auth}
    time.sleep(pause)  # docker login calls the daemon between its read and its save

    # Named as Go's os.CreateTemp names the Docker CLI's file: the name, random digits.
    temporary = config_dir / f"config.json{random.randrange(2**32)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        json.dump(document, stream, indent="\t")
    os.replace(temporary, path)
