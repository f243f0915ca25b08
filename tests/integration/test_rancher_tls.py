"""The Rancher target over HTTPS with a CA of the test's own."""

import logging

import pytest

from tests.rancher_server import (
    ACCESS_KEY,
    HOST,
    OLD_PASSWORD,
    SECRET_KEY,
    RancherServer,
    Targets,
    assert_no_secrets,
    ecr_credentials,
    make_tls_files,
)

pytest.importorskip("cryptography", reason="needs the cryptography package for a test CA")

NEW = "STAND-IN-ECR-PASSWORD-tls"


@pytest.fixture
def tls_files(tmp_path):
    return make_tls_files(tmp_path)


@pytest.fixture
def rancher(tls_files):
    _ca, cert, key = tls_files
    server = RancherServer(ACCESS_KEY, SECRET_KEY, tls=(cert, key)).start()
    server.credential_id = server.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    yield server
    server.stop()


@pytest.fixture
def targets(caplog):
    caplog.set_level(logging.DEBUG)
    made = Targets()
    yield made
    made.close()


def stored_password(rancher):
    return rancher.docker_credentials()[rancher.credential_id]["registries"][HOST]["password"]


def test_ca_file_verifies_rancher(rancher, targets, tls_files, caplog):
    ca, _cert, _key = tls_files
    target = targets.make(rancher.url_v3(), ca_file=str(ca))

    target.publish({HOST: ecr_credentials(NEW)})
    outcomes = target.flush(30.0)

    assert rancher.base.startswith("https://")
    assert outcomes[0].ok, outcomes
    assert stored_password(rancher) == NEW
    assert "plain http" not in caplog.text
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_unknown_ca_is_rejected(rancher, targets, caplog):
    target = targets.make(rancher.url_v3())

    target.publish({HOST: ecr_credentials(NEW)})
    outcomes = target.flush(30.0)

    error = outcomes[0].error
    assert f"TLS with {rancher.base} failed" in error
    assert "certificate verify failed" in error
    assert "rancher.ca_file" in error
    assert stored_password(rancher) == OLD_PASSWORD
    assert rancher.requests == []
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_other_ca_is_rejected(rancher, targets, tmp_path, caplog):
    other_directory = tmp_path / "other"
    other_directory.mkdir()
    other_ca, _cert, _key = make_tls_files(other_directory)
    target = targets.make(rancher.url_v3(), ca_file=str(other_ca))

    target.publish({HOST: ecr_credentials(NEW)})
    outcomes = target.flush(30.0)

    assert "certificate verify failed" in outcomes[0].error
    assert stored_password(rancher) == OLD_PASSWORD
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])
