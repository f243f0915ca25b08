"""ecr-agent against the rig: refresh, then `docker pull` with only the file it wrote.

The agent runs inside the rig's network namespace with a minimal environment, talks to
moto for tokens and to the rig's dockerd, and the docker CLI pulls from the TLS
registry. moto's password for the account is the registry password.
"""

import base64
import json
import os
import signal
import subprocess
import time

import pytest

from tests.e2e.rig import (
    AWS_SECRET_ACCESS_KEY,
    DEBIAN_DOCKER,
    HOST,
    IMAGE,
)

pytestmark = pytest.mark.e2e

DAEMON_TARGET = "docker daemon"
WRONG_PASSWORD = "STAND-IN-SECRET-wrong-registry-password"


class Agent:
    """ecr-agent runs with one config, state directory and Docker config file in tmp_path."""

    def __init__(self, rig, directory):
        self.rig = rig
        self.directory = directory
        self.config = None
        self.docker_config_dir = directory / "docker-config"
        self.docker_config = self.docker_config_dir / "config.json"
        self.log_path = directory / "agent.log"

    def configure(self, **docker_settings):
        self.config = self.rig.write_agent_config(self.directory, **docker_settings)

    def run(self, *args, timeout=180):
        result = subprocess.run(
            self.rig.agent_command(self.config, *args),
            env=self.rig.agent_environment(self.directory),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.assert_no_secret(result.stdout, result.stderr)
        return result

    def start(self, *args):
        with open(self.log_path, "wb") as log:
            return subprocess.Popen(
                self.rig.agent_command(self.config, *args),
                env=self.rig.agent_environment(self.directory),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def status(self):
        result = self.run("status", "--json")
        assert result.stdout, result.stderr
        (registry,) = json.loads(result.stdout)["registries"]
        return registry

    def state(self):
        """Return this registry's entry in state.json, or {} before the first write."""
        try:
            document = json.loads((self.directory / "state" / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return document["registries"].get(HOST, {})

    def target_state(self, name):
        return self.state().get("targets", {}).get(name, {})

    def assert_no_secret(self, *texts):
        for text in texts:
            assert self.rig.password not in text
            assert AWS_SECRET_ACCESS_KEY not in text


@pytest.fixture
def agent(rig, tmp_path):
    return Agent(rig, tmp_path)


def wait_until(condition, timeout, description):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {description}")


def remove_local_image(rig):
    rig.docker("rmi", "-f", IMAGE, check=False)
    assert rig.docker("image", "inspect", IMAGE, check=False).returncode != 0


def write_docker_config(directory, password):
    directory.mkdir(parents=True)
    auth = base64.b64encode(f"AWS:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {HOST: {"auth": auth}}}))
    return directory


@pytest.mark.parametrize("cli", [DEBIAN_DOCKER, "/usr/local/bin/docker"])
def test_refresh_then_pull(rig, agent, cli):
    if not os.access(cli, os.X_OK):
        pytest.skip(f"{cli} is not installed")
    agent.configure()

    result = agent.run("refresh")
    assert result.returncode == 0, result.stderr
    remove_local_image(rig)
    pull = rig.docker("pull", IMAGE, cli=cli, config_dir=agent.docker_config_dir, check=False)

    assert pull.returncode == 0, pull.stderr
    assert rig.docker("image", "inspect", IMAGE, check=False).returncode == 0


def test_pull_without_agent_fails(rig, tmp_path):
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text("{}")
    remove_local_image(rig)

    pull = rig.docker("pull", IMAGE, config_dir=config_dir, check=False)

    assert pull.returncode != 0
    assert "no basic auth credentials" in pull.stderr


def test_verify_login_follows_registry_password(rig, agent):
    agent.configure()
    config_target = f"docker config {agent.docker_config}"

    first = agent.run("refresh")
    assert first.returncode == 0, first.stderr
    assert agent.status()["targets"][DAEMON_TARGET]["ok"] is True

    rig.set_registry_password(WRONG_PASSWORD)
    try:
        second = agent.run("refresh")
        targets = agent.status()["targets"]
    finally:
        rig.set_registry_password(rig.password)

    assert second.returncode == 1
    daemon = targets[DAEMON_TARGET]
    assert daemon["ok"] is False
    assert HOST in daemon["error"]
    assert rig.docker_host in daemon["error"]
    assert "401 Unauthorized" in daemon["error"]
    assert targets[config_target]["ok"] is True
    assert agent.run("refresh").returncode == 0


def service_tasks(rig, name):
    """Return (task id, current state, error) of every task of the service."""
    result = rig.docker(
        "service", "ps", name, "--no-trunc", "--format", "{{.ID}}\t{{.CurrentState}}\t{{.Error}}"
    )
    tasks = []
    for line in result.stdout.splitlines():
        task_id, state, error = [*line.split("\t"), "", ""][:3]
        tasks.append((task_id, state.split(" ")[0], error))
    return tasks


def running_tasks(rig, name):
    return {task_id for task_id, state, _ in service_tasks(rig, name) if state == "Running"}


def service_version(rig, name):
    result = rig.docker("service", "inspect", name, "--format", "{{.Version.Index}} {{.UpdatedAt}}")
    index, updated_at = result.stdout.strip().split(" ", 1)
    return int(index), updated_at


def service_containers(rig, name):
    result = rig.docker(
        "ps", "--no-trunc", "--filter", f"label=com.docker.swarm.service.name={name}", "-q"
    )
    return set(result.stdout.split())


def test_swarm_service_auth_renewed(rig, agent, tmp_path):
    if not rig.has_sleep_binary:
        pytest.skip("the rig image has no static sleep binary (gcc and libc6-dev needed)")
    agent.configure(swarm_services=True)
    assert agent.run("refresh").returncode == 0
    rig.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        check_stale_service_recovers(rig, agent, tmp_path)
        check_running_service_keeps_tasks(rig, agent)
    finally:
        rig.docker("service", "rm", "stale", "live", check=False)
        rig.docker("swarm", "leave", "--force", check=False, timeout=60)


def check_stale_service_recovers(rig, agent, tmp_path):
    """A service created with a wrong password cannot pull until the agent renews its auth."""
    remove_local_image(rig)
    wrong = write_docker_config(tmp_path / "wrong-config", WRONG_PASSWORD)
    rig.docker(
        "service", "create", "--detach", "--with-registry-auth", "--name", "stale",
        IMAGE, "/bin/sleep", config_dir=wrong,
    )  # fmt: skip
    failed = wait_until(
        lambda: [t for t in service_tasks(rig, "stale") if t[1] in ("Rejected", "Failed")],
        90,
        "a task of the service with the wrong password to fail",
    )
    assert running_tasks(rig, "stale") == set(), failed

    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert "updated registry auth of Swarm service stale" in result.stderr
    wait_until(lambda: running_tasks(rig, "stale"), 120, "the service to run after renewal")


def check_running_service_keeps_tasks(rig, agent):
    """Renewing the auth of a running service leaves its task and container alone."""
    rig.docker(
        "service", "create", "--detach", "--with-registry-auth", "--name", "live",
        IMAGE, "/bin/sleep", config_dir=agent.docker_config_dir,
    )  # fmt: skip
    tasks = wait_until(lambda: running_tasks(rig, "live"), 90, "the live service to run")
    containers = service_containers(rig, "live")
    version, updated_at = service_version(rig, "live")

    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert "updated registry auth of Swarm service live" in result.stderr
    new_version, new_updated_at = service_version(rig, "live")
    assert new_version > version
    assert new_updated_at != updated_at
    # A restarted task would show up as a new task ID; watch the task list for 5 s.
    for _ in range(10):
        assert {t[0] for t in service_tasks(rig, "live")} == tasks
        assert running_tasks(rig, "live") == tasks
        time.sleep(0.5)
    assert service_containers(rig, "live") == containers


def pull_fresh(rig, agent):
    remove_local_image(rig)
    pull = rig.docker("pull", IMAGE, config_dir=agent.docker_config_dir, check=False)
    assert pull.returncode == 0, pull.stderr


def test_run_renews_across_dockerd_restart(rig, agent):
    agent.configure()
    config_target = f"docker config {agent.docker_config}"
    process = agent.start("run")
    try:
        successes = set()

        def renewed(count):
            successes.add(agent.state().get("last_success"))
            return len(successes - {None}) >= count

        wait_until(lambda: renewed(2), 60, "two renewals")
        pull_fresh(rig, agent)

        before = agent.target_state(DAEMON_TARGET).get("at")
        rig.stop_dockerd()
        down = wait_until(
            lambda: _failed_after(agent.target_state(DAEMON_TARGET), before),
            60,
            "a renewal that finds dockerd down",
        )
        assert "connection failed" in down["error"]
        wait_until(
            lambda: _written_after(agent.target_state(config_target), down["at"]),
            60,
            "a config file write while dockerd is down",
        )

        rig.start_dockerd()
        wait_until(lambda: agent.target_state(DAEMON_TARGET).get("ok"), 60, "login check ok")
        count = len(successes - {None})
        wait_until(lambda: renewed(count + 2), 60, "two more renewals")
        pull_fresh(rig, agent)
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)

    log = agent.log_path.read_text()
    assert returncode == 0, log
    assert "cannot reach the Docker daemon" in log
    agent.assert_no_secret(log)


def _written_after(target, moment):
    return target.get("ok") is True and target.get("at", "") > moment


def _failed_after(target, before):
    if target.get("ok") is False and target.get("at") != before:
        return target
    return None
