"""ecr-agent as a subprocess with moto and the stand-in Rancher: the [rancher] table end to end."""

import base64
import signal

import pytest

from tests.aws_proxy import AwsProxy
from tests.integration.conftest import SECRETS, AgentFiles, wait_until
from tests.rancher_server import ACCESS_KEY, OLD_PASSWORD, SECRET_KEY, RancherServer

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
MOTO_PASSWORD = "123456789012-auth-token"
PROJECT = "c-abcde:p-fghij"
ONE = """
[[registry]]
account = "123456789012"
region = "us-east-1"
"""


@pytest.fixture
def rancher():
    server = RancherServer(ACCESS_KEY, SECRET_KEY).start()
    yield server
    server.stop()


def rancher_table(tmp_path, url, create_missing=False):
    key_file = tmp_path / "rancher-secret-key"
    key_file.write_text(SECRET_KEY + "\n")
    key_file.chmod(0o600)
    return f"""
[rancher]
url = "{url}"
access_key = "{ACCESS_KEY}"
secret_key_file = "{key_file}"
create_missing = {"true" if create_missing else "false"}
"""


def docker_password(agent):
    auth = agent.docker_auths()[HOST]["auth"]
    return base64.b64decode(auth).decode().partition(":")[2]


def assert_clean(agent, *texts):
    agent.assert_no_secret(*texts)
    for text in texts:
        assert SECRET_KEY not in text
        assert OLD_PASSWORD not in text


def test_refresh_updates_rancher_2(agent, rancher, tmp_path):
    credential = rancher.add_docker_credential(
        "ecr", {HOST: ("AWS", OLD_PASSWORD)}, project=PROJECT
    )
    agent.write(ONE, extra=rancher_table(tmp_path, rancher.url_v3(PROJECT)))

    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    entry = rancher.docker_credentials(PROJECT)[credential]["registries"][HOST]
    assert entry["password"] == MOTO_PASSWORD
    assert entry["username"] == "AWS"
    assert docker_password(agent) == MOTO_PASSWORD
    assert "<4>rancher.url" in result.stderr
    assert f"<6>Rancher dockerCredential {credential} updated for {HOST}" in result.stderr
    assert agent.state()["registries"][HOST]["targets"]["rancher"]["ok"] is True
    assert_clean(agent, result.stdout, result.stderr)


def test_refresh_creates_in_rancher_1_6(agent, rancher, tmp_path):
    rancher.v1.setdefault("1a5", {"registry": {}, "registryCredential": {}})
    agent.write(ONE, extra=rancher_table(tmp_path, rancher.url_v1(), create_missing=True))

    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    [registry] = rancher.registries().values()
    [credential] = rancher.registry_credentials().values()
    assert registry["serverAddress"] == HOST
    assert credential["secretValue"] == MOTO_PASSWORD
    assert_clean(agent, result.stdout, result.stderr)


def test_refresh_with_rancher_down(agent, rancher, tmp_path):
    agent.write(ONE, extra=rancher_table(tmp_path, rancher.url_v3(PROJECT)))
    rancher.stop()

    result = agent.run("refresh")

    assert result.returncode == 1, result.stderr
    assert docker_password(agent) == MOTO_PASSWORD
    assert f"<3>Rancher update failed for {HOST}" in result.stderr
    assert "Connection refused" in result.stderr
    target = agent.state()["registries"][HOST]["targets"]["rancher"]
    assert target["ok"] is False
    assert "connection to http://127.0.0.1" in target["error"]
    assert_clean(agent, result.stdout, result.stderr)


def test_refresh_mixed_credential_reported(agent, rancher, tmp_path):
    other = "STAND-IN-DOCKER-HUB-PASSWORD"
    mixed = rancher.add_docker_credential(
        "mixed",
        {HOST: ("AWS", OLD_PASSWORD), "index.docker.io": ("deploy", other)},
        project=PROJECT,
    )
    agent.write(ONE, extra=rancher_table(tmp_path, rancher.url_v3(PROJECT)))

    result = agent.run("refresh")
    status = agent.run("status")

    assert result.returncode == 1, result.stderr
    assert f"{mixed} also holds index.docker.io" in result.stderr
    assert mixed in status.stdout
    registries = rancher.docker_credentials(PROJECT)[mixed]["registries"]
    assert registries["index.docker.io"]["password"] == other
    assert_clean(agent, result.stdout, result.stderr, status.stdout, status.stderr)
    assert other not in result.stderr + status.stdout


def test_check_config_rejects_bad_rancher_url(agent, rancher, tmp_path):
    agent.write(ONE, extra=rancher_table(tmp_path, f"{rancher.base}/v3/clusters/c-abcde"))

    result = agent.run("check-config")

    assert result.returncode == 78
    assert "rancher.url" in result.stderr
    assert "names no Rancher project API" in result.stderr
    assert "/v3/projects/c-xxxxx:p-xxxxx" in result.stderr
    assert_clean(agent, result.stdout, result.stderr)


@pytest.fixture
def rotating_proxy(moto):
    """Tokens that expire after 4 s, with a new password each time."""
    server = AwsProxy(moto.url, expires_in=4, rotate_passwords=True).start()
    yield server
    server.stop()


def test_run_keeps_docker_fresh_while_rancher_down(rotating_proxy, rancher, tmp_path):
    registry = rancher.add_registry(HOST)
    credential = rancher.add_registry_credential(registry, OLD_PASSWORD)
    agent = AgentFiles(tmp_path, rotating_proxy.url)
    agent.write(
        ONE,
        extra=rancher_table(tmp_path, rancher.url_v1()),
        renewal='min_interval = "1s"\nretry_initial = "1s"\nretry_max = "2s"\n',
    )
    rancher.stop()

    process = agent.start("run")
    try:
        # Several renewals while Rancher refuses connections: the file follows each one.
        assert wait_until(lambda: rotating_proxy.token_calls() >= 3)
        assert wait_until(lambda: docker_password(agent) == rotating_proxy.last_password())
        stored = rancher.registry_credentials()[credential]["secretValue"]
        assert stored == OLD_PASSWORD

        rancher.start()
        assert wait_until(
            lambda: (
                rancher.registry_credentials()[credential]["secretValue"]
                in rotating_proxy.issued[-2:]
            )
        )
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    assert f"<3>Rancher update failed for {HOST}" in stderr
    assert f"<6>Rancher registry credential {credential}" in stderr
    secrets = (*SECRETS, *rotating_proxy.issued, SECRET_KEY, OLD_PASSWORD)
    for secret in secrets:
        assert secret not in stdout
        assert secret not in stderr
