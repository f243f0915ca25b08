"""The Rancher target against the stand-in Rancher 2.x API (project registry credentials)."""

import base64
import logging

import pytest
import requests

from ecr_agent.rancher_v3 import credential_name
from tests.rancher_server import (
    ACCESS_KEY,
    HOST,
    HOST_B,
    OLD_PASSWORD,
    OTHER_PASSWORD,
    SECRET_KEY,
    RancherServer,
    Results,
    Targets,
    assert_no_secrets,
    ecr_credentials,
)

PROJECT = "c-abcde:p-fghij"
NEW = "STAND-IN-ECR-PASSWORD-v3-new"
NEW_B = "STAND-IN-ECR-PASSWORD-v3-b"
NEWER = "STAND-IN-ECR-PASSWORD-v3-newer"
ALIAS = "ecr-cache.internal:5000"


@pytest.fixture
def rancher():
    server = RancherServer(ACCESS_KEY, SECRET_KEY).start()
    server.v3.setdefault(PROJECT, {"dockerCredential": {}, "namespacedDockerCredential": {}})
    yield server
    server.stop()


@pytest.fixture
def targets(caplog):
    caplog.set_level(logging.DEBUG)
    made = Targets()
    yield made
    made.close()


def publish(target, hosts, timeout=30.0):
    assert target.publish(hosts) == []
    return target.flush(timeout)


def auth(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_dedicated_credential_updated(rancher, targets, caplog):
    credential = rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    rancher.docker_credentials()[credential]["registries"][HOST]["description"] = "prod"
    target = targets.make(rancher.url_v3())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert [(o.target, o.host, o.error) for o in outcomes] == [("rancher", HOST, None)]
    entry = rancher.docker_credentials()[credential]["registries"][HOST]
    assert entry["username"] == "AWS"
    assert entry["password"] == NEW
    assert entry["auth"] == auth("AWS", NEW)
    assert entry["description"] == "prod"
    assert f"Rancher dockerCredential {credential} updated for {HOST}" in caplog.text
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_project_url_singular_form(rancher, targets, caplog):
    credential = rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    target = targets.make(rancher.url_v3(form="project"))

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert rancher.docker_credentials()[credential]["registries"][HOST]["password"] == NEW
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_address_forms_match(rancher, targets, caplog):
    address = f"https://{HOST.upper()}:443/"
    credential = rancher.add_docker_credential("ecr", {address: ("AWS", OLD_PASSWORD)})
    target = targets.make(rancher.url_v3())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    registries = rancher.docker_credentials()[credential]["registries"]
    assert list(registries) == [address]
    assert registries[address]["password"] == NEW
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_credential_of_two_ecr_hosts_updated_whole(rancher, targets, caplog):
    credential = rancher.add_docker_credential(
        "ecr-both", {HOST: ("AWS", OLD_PASSWORD), HOST_B: ("AWS", OLD_PASSWORD)}
    )
    target = targets.make(rancher.url_v3())

    first = publish(target, {HOST: ecr_credentials(NEW), HOST_B: ecr_credentials(NEW_B)})
    second = publish(target, {HOST: ecr_credentials(NEWER)})

    assert all(o.ok for o in first + second), first + second
    registries = rancher.docker_credentials()[credential]["registries"]
    assert registries[HOST]["password"] == NEWER
    assert registries[HOST_B]["password"] == NEW_B
    assert registries[HOST_B]["auth"] == auth("AWS", NEW_B)
    assert rancher.count("PUT") == 2
    assert_no_secrets(caplog.text, first, second, secrets=[NEW, NEW_B, NEWER])


def test_alias_in_same_credential(rancher, targets, caplog):
    credential = rancher.add_docker_credential(
        "ecr", {HOST: ("AWS", OLD_PASSWORD), ALIAS: ("AWS", OLD_PASSWORD)}
    )
    target = targets.make(rancher.url_v3())
    credentials = ecr_credentials(NEW)

    outcomes = publish(target, {HOST: credentials, ALIAS: credentials})

    assert all(o.ok for o in outcomes), outcomes
    registries = rancher.docker_credentials()[credential]["registries"]
    assert {address: entry["password"] for address, entry in registries.items()} == {
        HOST: NEW,
        ALIAS: NEW,
    }
    assert rancher.count("PUT") == 1
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_mixed_credential_left_untouched(rancher, targets, caplog):
    mixed = rancher.add_docker_credential(
        "mixed",
        {
            HOST: ("AWS", OLD_PASSWORD),
            "index.docker.io": ("deploy", OTHER_PASSWORD),
            "quay.io": ("robot", OTHER_PASSWORD),
        },
    )
    target = targets.make(rancher.url_v3())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    error = outcomes[0].error
    assert f"dockerCredential {mixed} also holds index.docker.io, quay.io" in error
    assert "left untouched" in error
    assert "registry credential of its own" in error
    registries = rancher.docker_credentials()[mixed]["registries"]
    assert registries["index.docker.io"]["password"] == OTHER_PASSWORD
    assert registries["quay.io"]["password"] == OTHER_PASSWORD
    assert registries[HOST]["password"] == OLD_PASSWORD
    assert rancher.count("PUT") == 0
    assert f"Rancher update failed for {HOST}: dockerCredential {mixed}" in caplog.text
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_mixed_reported_beside_dedicated(rancher, targets, caplog):
    dedicated = rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    mixed = rancher.add_docker_credential(
        "mixed", {HOST: ("AWS", OLD_PASSWORD), "index.docker.io": ("deploy", OTHER_PASSWORD)}
    )
    target = targets.make(rancher.url_v3())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert mixed in outcomes[0].error
    stored = rancher.docker_credentials()
    assert stored[dedicated]["registries"][HOST]["password"] == NEW
    assert stored[mixed]["registries"][HOST]["password"] == OLD_PASSWORD
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_namespaced_credential_updated(rancher, targets, caplog):
    credential = rancher.add_docker_credential(
        "ecr", {HOST: ("AWS", OLD_PASSWORD)}, namespace="apps"
    )
    target = targets.make(rancher.url_v3())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert credential == "apps:ecr"
    assert rancher.docker_credentials()[credential]["registries"][HOST]["password"] == NEW
    assert rancher.count("PUT", "/namespaceddockercredentials/apps:ecr") == 1
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_pages_followed(rancher, targets, caplog):
    rancher.page_size = 1
    for number in range(3):
        rancher.add_docker_credential(f"other{number}", {f"r{number}.example.com": ("u", "p")})
    credential = rancher.add_docker_credential("zz-ecr", {HOST: ("AWS", OLD_PASSWORD)})
    target = targets.make(rancher.url_v3())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert rancher.docker_credentials()[credential]["registries"][HOST]["password"] == NEW
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_unmatched_host_names_addresses(rancher, targets, caplog):
    rancher.add_docker_credential("hub", {"index.docker.io": ("deploy", OTHER_PASSWORD)})
    target = targets.make(rancher.url_v3())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    error = outcomes[0].error
    assert f"no registry credential of project {PROJECT} holds {HOST}" in error
    assert "index.docker.io" in error
    assert "create_missing" in error
    assert rancher.count("POST") == 0
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_create_missing_creates_dedicated(rancher, targets, caplog):
    target = targets.make(rancher.url_v3(), create_missing=True)

    first = publish(target, {HOST: ecr_credentials(NEW)})
    second = publish(target, {HOST: ecr_credentials(NEWER)})

    assert first[0].ok, first
    assert second[0].ok, second
    created = rancher.docker_credentials()[f"p-fghij:{credential_name(HOST)}"]
    assert created["type"] == "dockerCredential"
    assert created["registries"][HOST]["username"] == "AWS"
    assert created["registries"][HOST]["password"] == NEWER
    assert rancher.count("POST") == 1
    assert rancher.count("PUT") == 1
    assert_no_secrets(caplog.text, first, second, secrets=[NEW, NEWER])


def test_create_missing_beside_mixed(rancher, targets, caplog):
    mixed = rancher.add_docker_credential(
        "mixed", {HOST: ("AWS", OLD_PASSWORD), "index.docker.io": ("deploy", OTHER_PASSWORD)}
    )
    target = targets.make(rancher.url_v3(), create_missing=True)

    outcomes = publish(target, {HOST: ecr_credentials(NEW), HOST_B: ecr_credentials(NEW_B)})

    outcome = {o.host: o for o in outcomes}
    assert outcome[HOST_B].ok, outcomes
    assert mixed in outcome[HOST].error
    stored = rancher.docker_credentials()
    assert stored[f"p-fghij:{credential_name(HOST)}"]["registries"][HOST]["password"] == NEW
    assert stored[f"p-fghij:{credential_name(HOST_B)}"]["registries"][HOST_B]["password"] == NEW_B
    assert stored[mixed]["registries"]["index.docker.io"]["password"] == OTHER_PASSWORD
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW, NEW_B])


def test_wrong_secret_key_is_401(rancher, targets, caplog):
    rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    target = targets.make(rancher.url_v3(), secret_key="STAND-IN-WRONG-SECRET")

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert "HTTP 401" in outcomes[0].error
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW, "STAND-IN-WRONG-SECRET"])


def test_whole_bearer_token_as_secret(rancher, targets, caplog):
    credential = rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    target = targets.make(rancher.url_v3(), access_key="", secret_key=f"{ACCESS_KEY}:{SECRET_KEY}")

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert rancher.docker_credentials()[credential]["registries"][HOST]["password"] == NEW
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_read_only_key_told_by_schema(rancher, targets, caplog):
    rancher.add_key("token-readonly", "STAND-IN-READONLY-SECRET", read_only=True)
    rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    target = targets.make(
        rancher.url_v3(), access_key="token-readonly", secret_key="STAND-IN-READONLY-SECRET"
    )

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    error = outcomes[0].error
    assert "dockerCredential schema" in error
    assert f"owner or member of project {PROJECT}" in error
    assert rancher.count("PUT") == 0
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW, "STAND-IN-READONLY-SECRET"])


def test_forbidden_update_is_403(rancher, targets, caplog):
    rancher.add_key("token-readonly", "STAND-IN-READONLY-SECRET", read_only=True)
    rancher.filter_schemas = False
    credential = rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    target = targets.make(
        rancher.url_v3(), access_key="token-readonly", secret_key="STAND-IN-READONLY-SECRET"
    )

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    error = outcomes[0].error
    assert "HTTP 403" in error
    assert f"owner or member of project {PROJECT}" in error
    assert rancher.docker_credentials()[credential]["registries"][HOST]["password"] == OLD_PASSWORD
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW, "STAND-IN-READONLY-SECRET"])


def test_rejected_update_redacts_echo(rancher, targets, caplog):
    rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    rancher.echo_values_in_errors = True
    rancher.reject_next_put()
    results = Results()
    target = targets.make(rancher.url_v3(), retry_max=0.05, on_result=results)

    target.publish({HOST: ecr_credentials(NEW)})

    assert results.wait_for(lambda calls: len(calls) >= 2)
    first = results.calls[0][0]
    assert "HTTP 422" in first.error
    assert "********" in first.error
    assert results.calls[1][0].ok
    assert_no_secrets(caplog.text, results.calls, secrets=[NEW])


def test_stand_in_drops_password_like_rancher(rancher):
    """The stand-in keeps Rancher's write-only rule: a PUT without password erases it."""
    credential = rancher.add_docker_credential("ecr", {HOST: ("AWS", OLD_PASSWORD)})
    url = f"{rancher.url_v3(form='project')}/dockercredentials/{credential}"
    session = requests.Session()
    session.auth = (ACCESS_KEY, SECRET_KEY)

    shown = session.get(url, timeout=10).json()
    session.put(url, json={"registries": shown["registries"]}, timeout=10).raise_for_status()

    assert "password" not in shown["registries"][HOST]
    assert "auth" not in shown["registries"][HOST]
    entry = rancher.docker_credentials()[credential]["registries"][HOST]
    assert entry["password"] == ""
    assert entry["auth"] == ""
