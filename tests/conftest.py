"""Shared fixtures: a moto server on loopback and a minimal agent environment."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.aws_proxy import free_port

ROOT = Path(__file__).resolve().parent.parent

# The suite shares two cores with dockerd, systemd and moto: time limits would make the
# property tests fail on a busy machine for reasons that have nothing to do with them.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")

# Stand-in AWS keys; moto accepts any. Tests assert that none of them leaks.
AWS_ACCESS_KEY_ID = "AKIASTANDINKEY000001"
AWS_SECRET_ACCESS_KEY = "STAND-IN-AWS-SECRET-KEY-do-not-log"


def moto_python():
    """Return the interpreter that has moto installed.

    The Debian 12 dependency set cannot install moto next to its pinned requests, so the
    test driver points ECR_AGENT_MOTO_PYTHON at the newest set's interpreter.
    """
    return os.environ.get("ECR_AGENT_MOTO_PYTHON", sys.executable)


class MotoServer:
    """A moto server subprocess on 127.0.0.1 with its request log."""

    def __init__(self, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process = None

    def start(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_EC2_METADATA_DISABLED": "true"}
        command = [moto_python(), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: {Path(self.log_path).read_text()}")
            try:
                urllib.request.urlopen(self.url + "/moto-api/data.json", timeout=1)  # noqa: S310
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not answer within 60 s")

    def reset(self):
        request = urllib.request.Request(self.url + "/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(request, timeout=5)  # noqa: S310

    def token_calls(self):
        """Count GetAuthorizationToken requests seen so far, from the server's log."""
        text = Path(self.log_path).read_text(errors="replace")
        return text.count("POST / HTTP")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server):
    moto_server.reset()
    return moto_server


def agent_env(tmp_path, **extra):
    """Return a minimal environment for an ecr-agent subprocess: no host AWS settings."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config-absent"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials-absent"),
    }
    env.update(extra)
    return env


def agent_command(*args):
    return [sys.executable, "-m", "ecr_agent", *args]


def require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def require_commands(*names):
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.skip(
            f"needs {', '.join(missing)} (Debian packages; `make test` as root installs them)"
        )
