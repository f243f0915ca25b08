"""ecr-agent as a subprocess against a moto server on loopback."""

import base64
import json
import signal

from tests.aws_proxy import PUBLIC_PASSWORD
from tests.integration.conftest import wait_until

ONE = """
[[registry]]
account = "123456789012"
region = "us-east-1"
"""
TWO_ACCOUNTS = (
    ONE
    + """
[[registry]]
account = "210987654321"
region = "us-east-1"
"""
)
TWO_REGIONS = (
    ONE
    + """
[[registry]]
account = "123456789012"
region = "eu-west-1"
"""
)
HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def decoded(entry):
    return base64.b64decode(entry["auth"]).decode()


def test_refresh_writes_docker_config(agent):
    agent.write(ONE)
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert decoded(agent.docker_auths()[HOST]) == "AWS:123456789012-auth-token"
    assert (agent.docker_config.stat().st_mode & 0o777) == 0o600
    assert (agent.state_dir.stat().st_mode & 0o777) == 0o700
    assert "<6>renewed " + HOST in result.stderr
    agent.assert_no_secret(result.stdout, result.stderr)


def test_two_accounts_share_one_call(agent, proxy):
    agent.write(TWO_ACCOUNTS)
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert proxy.token_calls() == 1
    assert set(agent.docker_auths()) == {HOST, "210987654321.dkr.ecr.us-east-1.amazonaws.com"}
    agent.assert_no_secret(result.stdout, result.stderr)


def test_two_regions_make_two_calls(agent, proxy):
    agent.write(TWO_REGIONS)
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert proxy.token_calls() == 2
    assert "123456789012.dkr.ecr.eu-west-1.amazonaws.com" in agent.docker_auths()


def test_assume_role_goes_through_sts(agent, proxy):
    agent.write(
        ONE,
        extra='role_arn = "arn:aws:iam::123456789012:role/ecr-pull"\nexternal_id = "ext-1"\n',
    )
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert proxy.calls["AssumeRole"] == 1
    assert proxy.token_calls() == 1
    assert "assuming role arn:aws:iam::123456789012:role/ecr-pull" in result.stderr
    agent.assert_no_secret(result.stdout, result.stderr)


def test_refresh_replaces_only_ecr_entries(agent):
    agent.docker_config.parent.mkdir(mode=0o700)
    existing = {
        "auths": {
            "registry.example.com": {"auth": "dXNlcjpTVEFORC1JTi1PVEhFUg=="},
            HOST: {"auth": base64.b64encode(b"AWS:old-password").decode()},
        },
        "credHelpers": {"gcr.io": "gcloud"},
        "detachKeys": "ctrl-q,q",
    }
    agent.docker_config.write_text(json.dumps(existing))
    agent.docker_config.chmod(0o640)
    agent.write(ONE)
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    written = json.loads(agent.docker_config.read_text())
    assert written["auths"]["registry.example.com"] == existing["auths"]["registry.example.com"]
    assert decoded(written["auths"][HOST]) == "AWS:123456789012-auth-token"
    assert written["credHelpers"] == {"gcr.io": "gcloud"}
    assert written["detachKeys"] == "ctrl-q,q"
    assert (agent.docker_config.stat().st_mode & 0o777) == 0o640


def test_unparsable_docker_config_untouched(agent):
    agent.docker_config.parent.mkdir(mode=0o700)
    agent.docker_config.write_text("{not json")
    agent.write(ONE)
    result = agent.run("refresh")

    assert result.returncode == 1
    assert agent.docker_config.read_text() == "{not json"
    assert str(agent.docker_config) in result.stderr


def test_status_reports_registries(agent):
    agent.write(ONE)
    agent.run("refresh")
    result = agent.run("status", "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    entry = document["registries"][0]
    assert entry["host"] == HOST
    assert entry["valid"] is True
    assert entry["next_renewal"]
    assert entry["targets"][f"docker config {agent.docker_config}"]["ok"] is True
    agent.assert_no_secret(result.stdout)

    text = agent.run("status")
    assert text.returncode == 0
    assert "valid until" in text.stdout


def test_status_before_any_run_fails(agent):
    agent.write(ONE)
    result = agent.run("status")
    assert result.returncode == 1
    assert "no state" in result.stderr


def test_expired_token_is_written_with_warning(agent, moto):
    agent.endpoint = moto.url  # moto's own answer: expiresAt 2015-01-01
    agent.write(ONE)
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert "<4>token for " + HOST + " arrived already expired" in result.stderr
    assert agent.run("status").returncode == 1
    assert "EXPIRED" in agent.run("status").stdout


def test_aws_down_fails_and_keeps_file(agent, tmp_path):
    agent.write(ONE)
    assert agent.run("refresh").returncode == 0
    before = agent.docker_config.read_text()

    agent.endpoint = "http://127.0.0.1:9"  # discard port: connection refused
    agent.write(ONE)
    result = agent.run("refresh")

    assert result.returncode == 1
    assert "<3>" in result.stderr
    assert "token request failed for us-east-1 (account 123456789012)" in result.stderr
    assert agent.docker_config.read_text() == before
    agent.assert_no_secret(result.stdout, result.stderr)


def test_check_config_invalid_exits_78(agent):
    agent.config.write_text('[[registry]]\naccount = "12"\nregion = "us-east-1"\n')
    result = agent.run("check-config")
    assert result.returncode == 78
    assert "registry[0].account: is '12', but must be 12 digits" in result.stderr


def test_check_config_live_writes_nothing(agent, proxy):
    agent.write(TWO_ACCOUNTS)
    result = agent.run("check-config", "--live")

    assert result.returncode == 0, result.stderr
    assert f"{HOST}: ok, token expires at" in result.stdout
    assert proxy.token_calls() == 1
    assert not agent.docker_config.exists()
    assert not agent.state_dir.exists()
    agent.assert_no_secret(result.stdout, result.stderr)


def test_run_signals(agent, proxy):
    agent.write(ONE)
    process = agent.start("run")
    try:
        assert wait_until(lambda: agent.docker_config.exists())
        assert wait_until(lambda: proxy.token_calls() == 1)

        process.send_signal(signal.SIGUSR1)
        assert wait_until(lambda: proxy.token_calls() == 2)

        agent.write(TWO_ACCOUNTS)
        process.send_signal(signal.SIGHUP)
        other = "210987654321.dkr.ecr.us-east-1.amazonaws.com"
        assert wait_until(lambda: other in agent.docker_auths())

        agent.config.write_text("[[registry]]\naccount = 'broken'\n")
        process.send_signal(signal.SIGHUP)
        calls = proxy.token_calls()
        process.send_signal(signal.SIGUSR1)
        # The old configuration still renews both accounts in one call after the reload.
        assert wait_until(lambda: proxy.token_calls() == calls + 1)

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    assert "reload rejected, keeping the running configuration" in stderr
    assert "<6>stopping" in stderr
    agent.assert_no_secret(stdout, stderr)


def test_public_registry(agent, proxy):
    agent.write(ONE + "\n[[registry]]\npublic = true\n")
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert proxy.calls["SpencerFrontendService.GetAuthorizationToken"] == 1
    assert decoded(agent.docker_auths()["public.ecr.aws"]) == f"AWS:{PUBLIC_PASSWORD}"
    assert PUBLIC_PASSWORD not in result.stderr
    agent.assert_no_secret(result.stdout, result.stderr)


def test_aliases_get_same_credentials(agent):
    agent.write(ONE + 'aliases = ["ecr-cache.internal:5000"]\n')
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    auths = agent.docker_auths()
    assert auths["ecr-cache.internal:5000"] == auths[HOST]


def test_version_and_module_entry(agent):
    from ecr_agent import __version__

    result = agent.run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ecr-agent {__version__}"


def test_config_from_environment(agent, tmp_path):
    import subprocess

    from tests.conftest import agent_command, agent_env

    agent.write(ONE)
    env = agent_env(tmp_path, ECR_AGENT_CONFIG=str(agent.config))
    result = subprocess.run(
        agent_command("check-config"), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f"# effective configuration of {agent.config}" in result.stdout


def test_sigterm_during_hung_call_exits(agent, proxy):
    proxy.fail("hang")
    agent.write(ONE)
    process = agent.start("run")
    try:
        assert wait_until(lambda: proxy.token_calls() == 1)
        process.send_signal(signal.SIGTERM)
        # Without the daemon threads the exit would wait for botocore's timeouts.
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "<6>stopping" in stderr


def test_status_after_config_broke(agent):
    agent.write(ONE)
    assert agent.run("refresh").returncode == 0
    agent.config.write_text(agent.config.read_text() + "\n[[registry]]\naccount = 'broken'\n")
    result = agent.run("status")

    assert result.returncode == 0, result.stderr
    assert "<3>invalid configuration" in result.stderr
    assert "showing the state in " + str(agent.state_dir) in result.stderr
    assert HOST in result.stdout


def test_config_error_logged_at_error_priority(agent):
    agent.config.write_text("[agent]\nlog_level = 'loud'\n")
    result = agent.run("run")
    assert result.returncode == 78
    assert result.stderr.startswith("<3>invalid configuration")


def test_two_agents_writing_one_file_keep_both(agent, tmp_path):
    import subprocess

    from tests.conftest import agent_command, agent_env

    agent.write(ONE)
    other = tmp_path / "other.toml"
    other.write_text(
        agent.config.read_text().replace('account = "123456789012"', 'account = "210987654321"')
    )
    for _ in range(8):
        agent.docker_config.unlink(missing_ok=True)
        processes = [
            subprocess.Popen(
                agent_command("--config", str(path), "refresh"),
                env=agent_env(tmp_path),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for path in (agent.config, other)
        ]
        assert [process.wait(timeout=60) for process in processes] == [0, 0]
        assert set(agent.docker_auths()) == {HOST, "210987654321.dkr.ecr.us-east-1.amazonaws.com"}
