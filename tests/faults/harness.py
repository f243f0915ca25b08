"""The agent under test: its files, its processes and what it reports.

Every process is ``python -m ecr_agent`` with a minimal environment (tests.conftest's
agent_env), output goes to files so that a long run never blocks on a full pipe, and
every process a test starts is ended by its PID when the test ends.
"""

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import AWS_SECRET_ACCESS_KEY, agent_command, agent_env

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
OTHER_HOST = f"{OTHER_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
ONE_REGISTRY = f'[[registry]]\naccount = "{ACCOUNT}"\nregion = "us-east-1"\n'
OTHER_REGISTRY = f'[[registry]]\naccount = "{OTHER_ACCOUNT}"\nregion = "us-east-1"\n'

# Renewal settings of the fault tests: retries within seconds, no random spread on plans.
FAST_RENEWAL = {"retry_initial": "1s", "retry_max": "4s", "min_interval": "2s", "jitter": "0s"}

# Stand-in secrets; none of them may appear in any output, state or error.
AWS_SESSION_TOKEN = "STAND-IN-AWS-SESSION-TOKEN-do-not-log"
RANCHER_SECRET_KEY = "STAND-IN-RANCHER-SECRET-KEY-do-not-log"


def secret_forms(secret: str) -> list[str]:
    """Return ``secret`` and the base64 forms it takes in Docker and HTTP basic auth."""
    forms = [secret, base64.b64encode(secret.encode()).decode()]
    for user in ("AWS", "token-stand-in", "STAND-IN-RANCHER-ACCESS-KEY"):
        forms.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return forms


def wait_until(condition, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def toml_table(name: str, values: dict) -> str:
    lines = [f"[{name}]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class RunningAgent:
    """An ``ecr-agent run`` process whose stdout and stderr go to files."""

    def __init__(self, process: subprocess.Popen, stdout: Path, stderr: Path):
        self.process = process
        self.pid = process.pid
        self.stdout_path = stdout
        self.stderr_path = stderr

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it may end meanwhile
                os.kill(self.pid, signum)

    def wait_started(self, timeout=60.0) -> None:
        """Wait until the signal handlers are installed (the "starting:" line)."""
        if not wait_until(lambda: "starting:" in self.log() or self.exited(), timeout):
            raise AssertionError(f"agent did not start within {timeout} s:\n{self.log()}")
        if self.exited():
            raise AssertionError(f"agent exited with {self.process.returncode}:\n{self.log()}")

    def exited(self) -> bool:
        return self.process.poll() is not None

    def stop(self, timeout=60.0) -> int:
        """Send SIGTERM and return the exit status."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait()


class AgentUnderTest:
    """A config file, a Docker config path, a state directory and the agent's processes."""

    def __init__(self, directory: Path, endpoint: str, env: dict | None = None):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.endpoint = endpoint
        self.config = directory / "ecr-agent.toml"
        self.docker_config = directory / "docker" / "config.json"
        self.state_dir = directory / "state"
        self.env = agent_env(directory, **(env or {}))
        self.running: list[RunningAgent] = []
        self.outputs: list[str] = []  # every stdout and stderr text of finished commands
        self._serial = 0

    def write(
        self,
        registries: str = ONE_REGISTRY,
        renewal: dict | None = None,
        docker: dict | None = None,
        extra: str = "",
        log_level: str = "debug",
    ) -> None:
        docker_settings = {"config_files": [str(self.docker_config)], "verify_login": False}
        docker_settings.update(docker or {})
        text = (
            toml_table("agent", {"state_dir": str(self.state_dir), "log_level": log_level})
            + toml_table("renewal", dict(FAST_RENEWAL, **(renewal or {})))
            + toml_table("aws", {"endpoint_url": self.endpoint, "sts_endpoint_url": self.endpoint})
            + toml_table("docker", docker_settings)
            + extra
            + "\n"
            + registries
        )
        self.config.write_text(text)

    def command(self, *args) -> list[str]:
        return agent_command("--config", str(self.config), *args)

    def run(self, *args, timeout=120.0) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.command(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.outputs += [result.stdout, result.stderr]
        return result

    def start(self, *args, env: dict | None = None) -> RunningAgent:
        self._serial += 1
        stdout = self.dir / f"agent-{self._serial}.out"
        stderr = self.dir / f"agent-{self._serial}.err"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(
                self.command(*args), env=dict(self.env, **(env or {})), stdout=out, stderr=err
            )
        running = RunningAgent(process, stdout, stderr)
        self.running.append(running)
        return running

    def cleanup(self) -> None:
        for running in self.running:
            running.kill()

    def all_output(self) -> list[str]:
        texts = list(self.outputs)
        for running in self.running:
            texts += [running.output(), running.log()]
        return texts

    def state(self) -> dict | None:
        try:
            return json.loads((self.state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def registry_state(self, host: str = HOST) -> dict:
        state = self.state() or {"registries": {}}
        return state["registries"].get(host) or {}

    def status_json(self) -> tuple[int, dict | None]:
        result = self.run("status", "--json")
        try:
            return result.returncode, json.loads(result.stdout)
        except ValueError:
            return result.returncode, None

    def docker_document(self) -> dict:
        return json.loads(self.docker_config.read_text())

    def password_of(self, host: str = HOST) -> str | None:
        """Return the password of ``host`` in the Docker config file, or None."""
        try:
            entry = self.docker_document()["auths"][host]
        except (OSError, ValueError, KeyError):
            return None
        return base64.b64decode(entry["auth"]).decode().partition(":")[2]


def process_memory(pid: int) -> tuple[int, int]:
    """Return (VmRSS in KiB, open file descriptors) of a running process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class NotifyReceiver:
    """A datagram socket in place of systemd's: records each sd_notify message with its time."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.messages: list[tuple[float, str]] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.path)
        self._socket.settimeout(0.5)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def times_of(self, assignment: str) -> list[float]:
        return [at for at, text in self.messages if assignment in text.splitlines()]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._socket.close()


KNOWN_SECRETS = (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, RANCHER_SECRET_KEY)
