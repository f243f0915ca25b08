"""ecr-agent as a systemd service: installed and driven inside a container booting systemd.

The tests run in file order and share one container. The last test scans the journal
that all of them wrote for secrets.
"""

import base64
import re
import time

import pytest
from conftest import (
    ACCOUNT,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    CONFIG_PATH,
    RANCHER_SECRET_KEY,
    STATE_DIR,
    TEST_USER,
    UNIT,
    config_toml,
    registry_host,
)

pytestmark = pytest.mark.system

OTHER_ACCOUNT = "210987654321"
SHORT_WATCHDOG = "[Service]\nWatchdogSec=4s\nRestartSec=1s\n"
PRIORITY_PREFIX = re.compile(r"^<\d>")


def moto_password(account):
    """The registry password moto returns for an account: AWS:<account>-auth-token."""
    return f"{account}-auth-token"


def monotonic_usec(agent, name):
    return int(agent.show(name)[name])


def auth_requests(agent):
    return [line for line in agent.docker_requests() if line.startswith("POST") and "/auth" in line]


def start(agent):
    agent.systemctl("start", UNIT)
    agent.wait_for_state("active", "running")


# -- installation --------------------------------------------------------------------------


def test_unit_disabled_after_install(installed):
    assert installed.enabled_after_install == "disabled"
    assert installed.active_after_install == "inactive"


def test_unit_verifies_inside(agent, installed):
    args = ["systemd-analyze", "verify", UNIT]
    if not installed.from_deb:
        args.insert(2, "--man=no")  # the venv install has no man pages
    result = agent.box.run(*args, check=False)
    own_lines = [line for line in result.stderr.splitlines() if "ecr-agent" in line]

    assert result.returncode == 0, result.stderr
    assert own_lines == []


# -- start and readiness ------------------------------------------------------------------


def test_enable_now_reaches_active(agent, measurements):
    started = time.monotonic()
    agent.systemctl("enable", "--now", UNIT)
    elapsed = time.monotonic() - started

    assert agent.state() == ("active", "running")
    assert agent.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    exec_start = monotonic_usec(agent, "ExecMainStartTimestampMonotonic")
    active = monotonic_usec(agent, "ActiveEnterTimestampMonotonic")
    measurements["ExecStart to active (READY=1)"] = f"{(active - exec_start) / 1e6:.2f} s"
    measurements["systemctl enable --now, wall time"] = f"{elapsed:.2f} s"
    assert agent.read_json(f"{STATE_DIR}/state.json")["registries"]


def test_active_only_after_first_pass(agent, measurements):
    agent.hang(True)
    agent.systemctl("start", "--no-block", UNIT)
    agent.wait_until(lambda: agent.main_pid() != 0, "the agent's main process")
    seen = set()
    for _ in range(15):  # about three seconds while the token call hangs
        seen.add(agent.state())
        time.sleep(0.2)

    assert seen == {("activating", "start")}
    assert agent.box.run("test", "-e", f"{STATE_DIR}/state.json", check=False).returncode != 0

    agent.hang(False)
    agent.wait_for_state("active", "running")
    assert agent.read_json(f"{STATE_DIR}/state.json")["registries"]
    exec_start = monotonic_usec(agent, "ExecMainStartTimestampMonotonic")
    active = monotonic_usec(agent, "ActiveEnterTimestampMonotonic")
    measurements["ExecStart to active with a 3 s hang in the first pass"] = (
        f"{(active - exec_start) / 1e6:.2f} s"
    )


def test_status_line(agent):
    start(agent)
    status_text = agent.show("StatusText")["StatusText"]
    output = agent.systemctl("status", UNIT, check=False).stdout
    status_lines = [line.strip() for line in output.splitlines() if "Status:" in line]

    assert status_text
    assert status_lines == [f'Status: "{status_text}"']
    assert "of 1 registry valid" in status_text


def test_config_files_written_from_sandbox(agent):
    start(agent)
    host = registry_host()
    root_config = agent.read_json("/root/.docker/config.json")
    user_config_path = f"/home/{TEST_USER}/.docker/config.json"
    user_config = agent.read_json(user_config_path)
    owner = agent.box.run("stat", "-c", "%U %a", user_config_path).stdout.split()

    assert host in root_config["auths"]
    assert host in user_config["auths"]
    assert owner == [TEST_USER, "600"]
    assert auth_requests(agent), "the Docker API stand-in got no POST /auth"


# -- reload ---------------------------------------------------------------------------


def test_reload_applies_changed_config(agent):
    start(agent)
    pid = agent.main_pid()
    agent.write_config(config_toml(accounts=(ACCOUNT, OTHER_ACCOUNT)))
    agent.systemctl("reload", UNIT)

    def new_registry_written():
        auths = agent.read_json("/root/.docker/config.json")["auths"]
        return registry_host(OTHER_ACCOUNT) in auths

    agent.wait_until(new_registry_written, f"{registry_host(OTHER_ACCOUNT)} in config.json")
    agent.wait_for_state("active", "running")
    assert agent.main_pid() == pid
    assert "reloading configuration" in agent.journal_text()


def test_reload_keeps_config_on_error(agent):
    start(agent)
    pid = agent.main_pid()
    agent.write_config(config_toml() + "[agent]\nno_such_key = 1\n")
    agent.systemctl("reload", UNIT)

    agent.wait_until(
        lambda: "reload rejected" in agent.show("StatusText")["StatusText"],
        "STATUS= naming the rejected reload",
    )
    agent.wait_for_state("active", "running")
    assert agent.main_pid() == pid
    errors = [text for priority, text in agent.agent_messages() if priority <= 3]
    assert any("reload rejected" in text for text in errors)

    before = len(auth_requests(agent))
    agent.systemctl("kill", "--signal=SIGUSR1", "--kill-who=main", UNIT)
    agent.wait_until(lambda: len(auth_requests(agent)) > before, "a renewal with the old config")
    assert agent.main_pid() == pid


# -- failures ---------------------------------------------------------------------------


def test_watchdog_restarts_hung_agent(agent):
    agent.add_drop_in("watchdog", SHORT_WATCHDOG)
    start(agent)
    pid = agent.main_pid()
    time.sleep(10)  # more than two watchdog periods while the agent idles
    assert agent.show("NRestarts")["NRestarts"] == "0"

    agent.hang(True)
    agent.systemctl("kill", "--signal=SIGUSR1", "--kill-who=main", UNIT)
    agent.wait_until(lambda: "Watchdog timeout" in agent.journal_text(), "a watchdog timeout")
    agent.wait_until(lambda: agent.show("NRestarts")["NRestarts"] != "0", "a restart")
    agent.hang(False)
    agent.wait_for_state("active", "running")

    journal = agent.journal_text()
    assert "Watchdog timeout (limit 4s)" in journal
    assert f"Killing process {pid} (ecr-agent) with signal SIGABRT" in journal
    assert "Scheduled restart job, restart counter is at 1" in journal
    assert agent.main_pid() != pid


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(config_toml() + "[agent]\nno_such_key = 1\n", id="unknown-key"),
        pytest.param(config_toml(accounts=("12345",)), id="bad-account"),
        pytest.param("[agent\n", id="not-toml"),
        pytest.param(None, id="missing-file"),
    ],
)
def test_invalid_config_exits_78_without_restart(agent, config):
    agent.add_drop_in("restart", "[Service]\nRestartSec=1s\n")
    if config is None:
        agent.box.run("rm", "-f", CONFIG_PATH)
    else:
        agent.write_config(config)

    result = agent.systemctl("start", UNIT, check=False)
    values = agent.show("ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")

    assert result.returncode != 0
    assert values["ExecMainStatus"] == "78"
    assert values["Result"] == "exit-code"
    assert (values["ActiveState"], values["SubState"]) == ("failed", "failed")
    assert values["NRestarts"] == "0"


def assert_clean_stop(agent):
    """Check the journal: the agent handled SIGTERM and systemd saw a successful exit.

    ``systemctl show`` cannot tell: systemd drops an inactive unit's runtime data.
    """
    journal = agent.journal_text()
    assert "ecr-agent.service: Deactivated successfully." in journal
    assert "timed out" not in journal
    assert "SIGKILL" not in journal
    assert "stopping" in [text for _, text in agent.agent_messages()]


def test_stop_exits_cleanly(agent, measurements):
    start(agent)
    started = time.monotonic()
    agent.systemctl("stop", UNIT)
    elapsed = time.monotonic() - started

    measurements["systemctl stop, wall time"] = f"{elapsed:.2f} s"
    assert agent.state() == ("inactive", "dead")
    assert_clean_stop(agent)


def test_stop_during_hung_call(agent, measurements):
    start(agent)
    agent.hang(True)
    agent.systemctl("kill", "--signal=SIGUSR1", "--kill-who=main", UNIT)
    agent.wait_until(
        lambda: any("SIGUSR1" in text for _, text in agent.agent_messages()),
        "the SIGUSR1 renewal",
    )
    time.sleep(1)  # the token call now waits on the proxy
    started = time.monotonic()
    agent.systemctl("stop", UNIT)
    elapsed = time.monotonic() - started

    measurements["systemctl stop during a hung token call, wall time"] = f"{elapsed:.2f} s"
    assert agent.state() == ("inactive", "dead")
    assert_clean_stop(agent)


# -- journal ------------------------------------------------------------------------------


def test_journal_priorities_in_healthy_run(agent):
    start(agent)
    agent.systemctl("kill", "--signal=SIGUSR1", "--kill-who=main", UNIT)
    agent.wait_until(
        lambda: any("SIGUSR1" in text for _, text in agent.agent_messages()),
        "the SIGUSR1 renewal",
    )
    messages = agent.agent_messages()

    assert [text for _, text in messages if PRIORITY_PREFIX.match(text)] == []
    assert any(priority == 6 for priority, _ in messages)
    assert agent.agent_messages("--priority=err") == []


def test_journal_err_shows_only_errors(agent):
    agent.write_config(config_toml(endpoint_url="http://127.0.0.1:9"))
    start(agent)
    errors = agent.agent_messages("--priority=err")
    everything = agent.agent_messages()

    assert errors, "a refused ECR endpoint logged no error"
    assert all(priority <= 3 for priority, _ in errors)
    assert any(ACCOUNT in text or "127.0.0.1:9" in text for _, text in errors)
    assert any(priority == 6 for priority, _ in everything)
    assert [text for _, text in errors] == [text for p, text in everything if p <= 3]


# -- credentials ----------------------------------------------------------------------------


def test_rancher_secret_from_load_credential(agent):
    agent.box.write_file("/etc/ecr-agent/rancher-secret", RANCHER_SECRET_KEY, mode=0o600)
    rancher = (
        '[rancher]\nurl = "http://127.0.0.1:9/v2-beta/projects/1a5"\n'
        'access_key = "STANDINACCESSKEY"\nsecret_key_file = "rancher-secret"\n'
    )
    agent.write_config(config_toml(extra=rancher))

    result = agent.systemctl("start", UNIT, check=False)
    assert result.returncode != 0
    assert agent.show("ExecMainStatus")["ExecMainStatus"] == "78"

    agent.systemctl("reset-failed", UNIT)
    drop_in = "[Service]\nLoadCredential=rancher-secret:/etc/ecr-agent/rancher-secret\n"
    agent.add_drop_in("credential", drop_in)
    start(agent)
    assert agent.show("ExecMainStatus")["ExecMainStatus"] == "0"


def test_journal_has_no_secret(agent):
    agent.write_config(config_toml(accounts=(ACCOUNT, OTHER_ACCOUNT), log_level="debug"))
    start(agent)
    agent.systemctl("reload", UNIT)
    agent.systemctl("kill", "--signal=SIGUSR1", "--kill-who=main", UNIT)
    agent.wait_until(lambda: "SIGUSR1" in agent.journal_text(), "the SIGUSR1 renewal", interval=0.5)
    agent.systemctl("stop", UNIT)

    journal = agent.box.run("journalctl", "--no-pager", "-o", "verbose").stdout
    state = agent.box.run("sh", "-c", f"cat {STATE_DIR}/state.json", check=False).stdout
    secrets = [AWS_SECRET_ACCESS_KEY, RANCHER_SECRET_KEY]
    for account in (ACCOUNT, OTHER_ACCOUNT):
        password = moto_password(account)
        secrets += [password, base64.b64encode(f"AWS:{password}".encode()).decode()]

    assert AWS_ACCESS_KEY_ID not in state
    for secret in secrets:
        assert secret not in journal, f"{secret[:12]}... is in the journal"
        assert secret not in state, f"{secret[:12]}... is in state.json"
