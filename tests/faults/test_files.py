"""The Docker config file under stress: another writer, kill -9, a full or read-only disk,
planted links and unusable files. Nothing a user had may be lost or touched."""

import base64
import json
import os
import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from ecr_agent import safe_files
from ecr_agent.config import DockerSettings
from ecr_agent.credentials import Credentials
from ecr_agent.docker_config import DockerConfigTarget
from tests.faults.harness import HOST, wait_until
from tests.faults.writers import DEBIAN_DOCKER, FakeDaemon, docker_login, python_login

WRITER_LOGINS = 120  # saves by the other writer, at least
MIN_RENEWALS = 100  # renewals, and with them writes, by the agent meanwhile, at least


class Poller(threading.Thread):
    """Reads the file in a loop; every read must be a whole JSON object."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.reads = 0
        self.broken: list[bytes] = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                continue
            self.reads += 1
            try:
                document = json.loads(data)
            except ValueError:
                document = None
            if not isinstance(document, dict):
                self.broken.append(data)

    def stop(self):
        self.done.set()
        self.join(10)


class Renewer(threading.Thread):
    """Sends SIGUSR1 to the agent in a loop, so it renews and rewrites the file."""

    def __init__(self, running, interval=0.02):
        super().__init__(daemon=True)
        self.running = running
        self.interval = interval
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(self.interval):
            self.running.signal(signal.SIGUSR1)

    def stop(self):
        self.done.set()
        self.join(10)


def other_writer(kind):
    if kind == "docker-login":
        if not DEBIAN_DOCKER.exists():
            pytest.skip(f"needs the Docker CLI at {DEBIAN_DOCKER} (Debian package docker.io)")
        daemon = FakeDaemon().start()
        return daemon, lambda directory, host, password: docker_login(
            directory, daemon, host, password
        )
    return None, python_login


@pytest.mark.parametrize("kind", ["docker-login", "python"])
def test_concurrent_writer_loses_nothing(agent, proxy, kind):
    daemon, login = other_writer(kind)
    agent.docker_config.parent.mkdir(mode=0o700)
    agent.docker_config.write_text(json.dumps({"auths": {}, "detachKeys": "ctrl-q,q"}))
    agent.write()
    running = agent.start("run")
    poller = Poller(agent.docker_config)
    renewer = Renewer(running)
    hosts = []
    try:
        running.wait_started()
        assert wait_until(lambda: agent.password_of() is not None)
        poller.start()
        renewer.start()
        renewals_before = proxy.token_calls()

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            len(hosts) < WRITER_LOGINS or proxy.token_calls() - renewals_before < MIN_RENEWALS
        ):
            hosts.append(f"registry-{len(hosts)}.example.test")
            login(agent.docker_config.parent, hosts[-1], f"STAND-IN-OTHER-{hosts[-1]}")

        renewer.stop()
        renewals = proxy.token_calls() - renewals_before
        running.signal(signal.SIGUSR1)
        assert wait_until(lambda: agent.password_of() == proxy.last_password())
        poller.stop()
        assert running.stop() == 0
    finally:
        renewer.stop()
        poller.stop()
        if daemon:
            daemon.stop()

    document = agent.docker_document()
    missing = [host for host in hosts if host not in document["auths"]]
    assert renewals >= MIN_RENEWALS
    assert poller.reads > 100
    assert poller.broken == []
    assert missing == []
    assert document["detachKeys"] == "ctrl-q,q"
    for host in hosts:
        auth = base64.b64decode(document["auths"][host]["auth"]).decode()
        assert auth == f"AWS:STAND-IN-OTHER-{host}"


def publish_once(path):
    now = datetime.now(UTC)
    credentials = Credentials("AWS", "STAND-IN-ECR-PASSWORD", now, now + timedelta(hours=12))
    target = DockerConfigTarget(DockerSettings(config_files=(path,), verify_login=False))
    return target.publish({HOST: credentials})


def test_change_before_rename_is_merged(tmp_path, monkeypatch):
    """A save by another program between the agent's read and its rename is kept."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {}}))
    real_check = safe_files.is_unchanged
    calls = []

    def other_program_saves_first(dir_fd, name, existing):
        if not calls:
            python_login(tmp_path, "registry.example.test", "STAND-IN-OTHER", pause=0)
        calls.append(name)
        return real_check(dir_fd, name, existing)

    monkeypatch.setattr(safe_files, "is_unchanged", other_program_saves_first)
    outcomes = publish_once(path)

    assert [outcome.error for outcome in outcomes] == [None]
    assert len(calls) == 2
    assert set(json.loads(path.read_text())["auths"]) == {"registry.example.test", HOST}


def test_save_under_way_is_waited_for(tmp_path):
    """A fresh temporary file of the Docker CLI makes the agent wait and merge again."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {}}))
    foreign = tmp_path / "config.json4177362514"
    foreign.write_text("{}")

    def finish_save():
        time.sleep(0.05)
        python_login(tmp_path, "registry.example.test", "STAND-IN-OTHER", pause=0)
        foreign.unlink()

    saver = threading.Thread(target=finish_save)
    saver.start()
    outcomes = publish_once(path)
    saver.join()

    assert [outcome.error for outcome in outcomes] == [None]
    assert set(json.loads(path.read_text())["auths"]) == {"registry.example.test", HOST}


def test_stale_foreign_temp_ignored(tmp_path):
    """A temporary file a killed docker left behind long ago does not block writing."""
    path = tmp_path / "config.json"
    stale = tmp_path / "config.json1234567"
    stale.write_text("{}")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))

    outcomes = publish_once(path)

    assert [outcome.error for outcome in outcomes] == [None]
    assert HOST in json.loads(path.read_text())["auths"]
    assert stale.exists()


def test_file_that_keeps_changing_reported(tmp_path):
    """A file rewritten at every attempt is left alone and the target fails with a reason."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {}}))
    (tmp_path / "config.json987654321").write_text("{}")  # a save that never ends

    outcomes = publish_once(path)

    assert len(outcomes) == 1
    assert "another program rewrote the file 5 times" in outcomes[0].error
    assert json.loads(path.read_text()) == {"auths": {}}


KILLS = 100 if os.environ.get("ECR_AGENT_SOAK") == "full" else 12
DOCKER_LEFTOVER = ".config.json.ecr-agent-0123456789abcdef.tmp"  # safe_files.temp_name form
STATE_LEFTOVER = ".state.k1ll3d00.tmp"  # tempfile.mkstemp(prefix=".state.", suffix=".tmp")


def leftovers(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def test_kill_9_leaves_old_or_new_file(agent, proxy):
    """SIGKILL at random points of renewals: the file is always whole, old or new."""
    other = {"auth": base64.b64encode(b"user:STAND-IN-OTHER").decode()}
    agent.docker_config.parent.mkdir(mode=0o700)
    agent.docker_config.write_text(
        json.dumps({"auths": {"registry.example.test": other}, "detachKeys": "ctrl-q,q"})
    )
    agent.write()
    rng = random.Random(os.environ.get("ECR_AGENT_KILL_SEED", "ecr-agent"))
    poller = Poller(agent.docker_config)
    poller.start()
    seen_leftovers = 0

    try:
        for _ in range(KILLS):
            running = agent.start("run")
            running.wait_started()
            renewer = Renewer(running, interval=0.005)
            renewer.start()
            time.sleep(rng.uniform(0.05, 0.5))
            running.kill()
            renewer.stop()

            document = agent.docker_document()
            assert document["auths"]["registry.example.test"] == other
            assert document["detachKeys"] == "ctrl-q,q"
            assert agent.password_of() in (None, *proxy.issued)
            seen_leftovers += len(leftovers(agent.docker_config.parent))
    finally:
        poller.stop()

    assert poller.broken == []
    assert poller.reads > KILLS
    (agent.docker_config.parent / DOCKER_LEFTOVER).write_text("{")
    agent.state_dir.mkdir(exist_ok=True)
    (agent.state_dir / STATE_LEFTOVER).write_text("{")

    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert leftovers(agent.docker_config.parent) == []
    assert leftovers(agent.state_dir) == []
    assert agent.password_of() == proxy.last_password()
    print(f"{KILLS} kills, {seen_leftovers} temporary files left behind by them")


HANGING_HELPER = """#!/bin/sh
# A credential helper that never returns, like docker-credential-pass waiting for a
# GPG passphrase at a terminal that is not there.
echo started >> "$HELPER_LOG"
exec sleep 3600
"""


def test_hanging_helper_costs_one_timeout(tmp_path, monkeypatch):
    """The publish pass, and with it the watchdog ping, waits for a hung helper once."""
    helpers = tmp_path / "bin"
    helpers.mkdir()
    (helpers / "docker-credential-hanging").write_text(HANGING_HELPER)
    (helpers / "docker-credential-hanging").chmod(0o755)
    monkeypatch.setenv("PATH", f"{helpers}:{os.environ['PATH']}")
    monkeypatch.setenv("HELPER_LOG", str(tmp_path / "helper.log"))
    files = [tmp_path / name / "config.json" for name in ("first", "second")]
    for path in files:
        path.parent.mkdir()
        path.write_text(json.dumps({"credsStore": "hanging"}))
    now = datetime.now(UTC)
    hosts = {
        host: Credentials("AWS", f"STAND-IN-{index}", now, now + timedelta(hours=12))
        for index, host in enumerate((HOST, "210987654321.dkr.ecr.us-east-1.amazonaws.com"))
    }
    settings = DockerSettings(config_files=tuple(files), verify_login=False)

    outcomes = DockerConfigTarget(settings, helper_timeout=0.5).publish(hosts)

    assert (tmp_path / "helper.log").read_text().count("started") == 1
    assert [outcome.error for outcome in outcomes] == [None, None]
    assert "docker-credential-hanging store timed out after 0.5 s" in outcomes[0].warning
    assert "docker-credential-hanging store was not run, because" in outcomes[1].warning
    for path in files:
        assert set(json.loads(path.read_text())["auths"]) == set(hosts)
