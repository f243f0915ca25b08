import json
import subprocess
import textwrap
import time

import pytest

from tests.aws_proxy import AwsProxy
from tests.conftest import AWS_SECRET_ACCESS_KEY, agent_command, agent_env

# The password moto hands out for an account is "<account>-auth-token".
MOTO_PASSWORDS = ("123456789012-auth-token", "210987654321-auth-token")
SECRETS = (AWS_SECRET_ACCESS_KEY, *MOTO_PASSWORDS)


@pytest.fixture
def proxy(moto):
    """A counting proxy in front of moto whose tokens expire in 12 hours."""
    server = AwsProxy(moto.url, expires_in=12 * 3600).start()
    yield server
    server.stop()


class AgentFiles:
    """A config file, a Docker config path and a state directory in a temp dir."""

    def __init__(self, tmp_path, endpoint):
        self.tmp_path = tmp_path
        self.endpoint = endpoint
        self.config = tmp_path / "ecr-agent.toml"
        self.docker_config = tmp_path / "docker" / "config.json"
        self.state_dir = tmp_path / "state"

    def write(self, registries, extra="", renewal=""):
        text = f"""
        [agent]
        state_dir = "{self.state_dir}"
        log_level = "debug"
        [renewal]
        jitter = "0s"
        {renewal}
        [aws]
        endpoint_url = "{self.endpoint}"
        sts_endpoint_url = "{self.endpoint}"
        [docker]
        config_files = ["{self.docker_config}"]
        verify_login = false
        """
        self.config.write_text(textwrap.dedent(text) + textwrap.dedent(registries) + extra)

    def run(self, *args, timeout=60):
        return subprocess.run(
            agent_command("--config", str(self.config), *args),
            env=agent_env(self.tmp_path),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args):
        return subprocess.Popen(
            agent_command("--config", str(self.config), *args),
            env=agent_env(self.tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def docker_auths(self):
        return json.loads(self.docker_config.read_text())["auths"]

    def state(self):
        return json.loads((self.state_dir / "state.json").read_text())

    def assert_no_secret(self, *texts):
        state = (self.state_dir / "state.json").read_text() if self.state_dir.exists() else ""
        for secret in SECRETS:
            for text in (*texts, state):
                assert secret not in text


@pytest.fixture
def agent(tmp_path, proxy):
    return AgentFiles(tmp_path, proxy.url)


def wait_until(condition, timeout=90.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False
