"""The Rancher target against the stand-in Rancher 1.6 API (registries, credentials)."""

import logging

import pytest

from ecr_agent.rancher_v1 import PLACEHOLDER_EMAIL
from tests.rancher_server import (
    ACCESS_KEY,
    HOST,
    HOST_B,
    OLD_PASSWORD,
    SECRET_KEY,
    RancherServer,
    Results,
    Targets,
    assert_no_secrets,
    ecr_credentials,
)

NEW = "STAND-IN-ECR-PASSWORD-v1-new"
NEWER = "STAND-IN-ECR-PASSWORD-v1-newer"


@pytest.fixture
def rancher():
    server = RancherServer(ACCESS_KEY, SECRET_KEY).start()
    server.v1.setdefault("1a5", {"registry": {}, "registryCredential": {}})
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


def secrets_of(rancher):
    return [c["secretValue"] for c in rancher.registry_credentials().values()]


def test_one_registry_updated(rancher, targets, caplog):
    registry = rancher.add_registry(HOST)
    credential = rancher.add_registry_credential(registry, OLD_PASSWORD)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert [(o.target, o.host, o.error) for o in outcomes] == [("rancher", HOST, None)]
    stored = rancher.registry_credentials()[credential]
    assert stored["secretValue"] == NEW
    assert stored["publicValue"] == "AWS"
    assert stored["email"] == "ops@example.com"
    assert {auth for _m, _p, auth in rancher.requests} == {"basic"}
    assert target.results() == outcomes
    assert f"Rancher registry credential {credential} of registry {registry}" in caplog.text
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


@pytest.mark.parametrize(
    "address",
    [
        HOST.upper(),
        f"https://{HOST}",
        f"https://{HOST}/",
        f"{HOST}:443",
        f"HTTPS://{HOST.upper()}:443/",
    ],
)
def test_server_address_forms_match(rancher, targets, caplog, address):
    registry = rancher.add_registry(address)
    credential = rancher.add_registry_credential(registry, OLD_PASSWORD)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert rancher.registry_credentials()[credential]["secretValue"] == NEW
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_several_registries_updated(rancher, targets, caplog):
    first = rancher.add_registry(HOST)
    second = rancher.add_registry(f"https://{HOST}/")
    other = rancher.add_registry("registry.example.com")
    for registry in (first, second, other):
        rancher.add_registry_credential(registry, OLD_PASSWORD)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    by_registry = {
        c["registryId"]: c["secretValue"] for c in rancher.registry_credentials().values()
    }
    assert by_registry == {first: NEW, second: NEW, other: OLD_PASSWORD}
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_two_credentials_on_one_registry(rancher, targets, caplog):
    registry = rancher.add_registry(HOST)
    rancher.add_registry_credential(registry, OLD_PASSWORD)
    rancher.add_registry_credential(registry, OLD_PASSWORD, email="")
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    stored = list(rancher.registry_credentials().values())
    assert [c["secretValue"] for c in stored] == [NEW, NEW]
    assert sorted(c["email"] for c in stored) == sorted(["ops@example.com", PLACEHOLDER_EMAIL])
    assert rancher.count("PUT", "/registrycredentials/") == 2
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_pages_followed(rancher, targets, caplog):
    rancher.page_size = 1
    for number in range(4):
        rancher.add_registry(f"registry{number}.example.com")
    registry = rancher.add_registry(HOST)
    credential = rancher.add_registry_credential(registry, OLD_PASSWORD)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert rancher.registry_credentials()[credential]["secretValue"] == NEW
    assert rancher.count("GET", "marker=m4") == 1
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_default_project_of_environment_key(rancher, targets, caplog):
    registry = rancher.add_registry(HOST)
    credential = rancher.add_registry_credential(registry, OLD_PASSWORD)
    target = targets.make(rancher.url_v1(project=None, api="v1"))

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert rancher.registry_credentials()[credential]["secretValue"] == NEW
    assert rancher.requests[0][1] == "/v1"
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_aliases_are_hosts_of_their_own(rancher, targets, caplog):
    alias = "ecr-cache.internal:5000"
    for address in (HOST, alias):
        rancher.add_registry_credential(rancher.add_registry(address), OLD_PASSWORD)
    target = targets.make(rancher.url_v1())
    credentials = ecr_credentials(NEW)

    outcomes = publish(target, {HOST: credentials, alias: credentials})

    assert sorted(o.host for o in outcomes if o.ok) == sorted([HOST, alias])
    assert secrets_of(rancher) == [NEW, NEW]
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_inactive_registry_skipped(rancher, targets, caplog):
    active = rancher.add_registry(HOST)
    inactive = rancher.add_registry(f"https://{HOST}", state="inactive")
    rancher.add_registry_credential(active, OLD_PASSWORD)
    rancher.add_registry_credential(inactive, OLD_PASSWORD)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert f"{inactive} (inactive)" in outcomes[0].warning
    by_registry = {
        c["registryId"]: c["secretValue"] for c in rancher.registry_credentials().values()
    }
    assert by_registry == {active: NEW, inactive: OLD_PASSWORD}
    assert f"Rancher registry {inactive}" in caplog.text
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_only_inactive_registry_fails(rancher, targets, caplog):
    registry = rancher.add_registry(HOST, state="inactive")
    rancher.add_registry_credential(registry, OLD_PASSWORD)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert not outcomes[0].ok
    assert f"{registry} (inactive)" in outcomes[0].error
    assert secrets_of(rancher) == [OLD_PASSWORD]
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_unmatched_host_names_rancher_hosts(rancher, targets, caplog):
    rancher.add_registry_credential(rancher.add_registry("quay.io"), OLD_PASSWORD)
    rancher.add_registry_credential(rancher.add_registry("index.docker.io"), OLD_PASSWORD)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    error = outcomes[0].error
    assert f"no Rancher registry has serverAddress {HOST}" in error
    assert "index.docker.io, quay.io" in error
    assert "create_missing" in error
    assert rancher.count("PUT") == 0
    assert rancher.count("POST") == 0
    assert f"Rancher update failed for {HOST}" in caplog.text
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_registry_without_credential_fails(rancher, targets, caplog):
    registry = rancher.add_registry(HOST)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert f"Rancher registry {registry} ({HOST}) has no registry credential" in outcomes[0].error
    assert rancher.count("POST") == 0
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_create_missing_creates_registry_and_credential(rancher, targets, caplog):
    target = targets.make(rancher.url_v1(), create_missing=True)

    first = publish(target, {HOST: ecr_credentials(NEW)})
    second = publish(target, {HOST: ecr_credentials(NEWER)})

    assert first[0].ok, first
    assert second[0].ok, second
    registries = list(rancher.registries().values())
    assert [r["serverAddress"] for r in registries] == [HOST]
    credentials = list(rancher.registry_credentials().values())
    assert len(credentials) == 1
    assert credentials[0]["registryId"] == registries[0]["id"]
    assert credentials[0]["secretValue"] == NEWER
    assert credentials[0]["publicValue"] == "AWS"
    assert credentials[0]["email"] == PLACEHOLDER_EMAIL
    assert_no_secrets(caplog.text, first, second, secrets=[NEW, NEWER])


def test_create_missing_adds_credential_to_registry(rancher, targets, caplog):
    registry = rancher.add_registry(HOST)
    target = targets.make(rancher.url_v1(), create_missing=True)

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert outcomes[0].ok, outcomes
    assert len(rancher.registries()) == 1
    [credential] = rancher.registry_credentials().values()
    assert credential["registryId"] == registry
    assert credential["secretValue"] == NEW
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_one_host_fails_other_succeeds(rancher, targets, caplog):
    rancher.add_registry_credential(rancher.add_registry(HOST), OLD_PASSWORD)
    target = targets.make(rancher.url_v1())

    outcomes = publish(target, {HOST: ecr_credentials(NEW), HOST_B: ecr_credentials(NEWER)})

    assert {o.host: o.ok for o in outcomes} == {HOST: True, HOST_B: False}
    assert secrets_of(rancher) == [NEW]
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW, NEWER])


def test_wrong_secret_key_is_401(rancher, targets, caplog):
    rancher.add_registry_credential(rancher.add_registry(HOST), OLD_PASSWORD)
    target = targets.make(rancher.url_v1(), secret_key="STAND-IN-WRONG-SECRET")

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    error = outcomes[0].error
    assert "HTTP 401" in error
    assert f"access key {ACCESS_KEY!r}" in error
    assert secrets_of(rancher) == [OLD_PASSWORD]
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW, "STAND-IN-WRONG-SECRET"])


def test_read_only_key_told_by_schema(rancher, targets, caplog):
    rancher.add_key("AKREADONLY", "STAND-IN-READONLY-SECRET", read_only=True)
    rancher.add_registry_credential(rancher.add_registry(HOST), OLD_PASSWORD)
    target = targets.make(
        rancher.url_v1(), access_key="AKREADONLY", secret_key="STAND-IN-READONLY-SECRET"
    )

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    error = outcomes[0].error
    assert "registryCredential schema" in error
    assert "no PUT" in error
    assert "environment API key" in error
    assert rancher.count("PUT") == 0
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW, "STAND-IN-READONLY-SECRET"])


def test_forbidden_update_is_403(rancher, targets, caplog):
    rancher.add_key("AKREADONLY", "STAND-IN-READONLY-SECRET", read_only=True)
    rancher.filter_schemas = False
    rancher.add_registry_credential(rancher.add_registry(HOST), OLD_PASSWORD)
    target = targets.make(
        rancher.url_v1(), access_key="AKREADONLY", secret_key="STAND-IN-READONLY-SECRET"
    )

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    error = outcomes[0].error
    assert "HTTP 403" in error
    assert "environment API key" in error
    assert rancher.count("PUT") == 1
    assert secrets_of(rancher) == [OLD_PASSWORD]
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW, "STAND-IN-READONLY-SECRET"])


def test_unknown_project_is_404(rancher, targets, caplog):
    target = targets.make(rancher.url_v1(project="1a99"))

    outcomes = publish(target, {HOST: ecr_credentials(NEW)})

    assert "HTTP 404" in outcomes[0].error
    assert "/v2-beta/projects/1a99" in outcomes[0].error
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_rejected_update_redacts_echo(rancher, targets, caplog):
    rancher.add_registry_credential(rancher.add_registry(HOST), OLD_PASSWORD)
    rancher.echo_values_in_errors = True
    rancher.reject_next_put()
    results = Results()
    target = targets.make(rancher.url_v1(), retry_max=0.05, on_result=results)

    target.publish({HOST: ecr_credentials(NEW)})

    assert results.wait_for(lambda calls: len(calls) >= 2)
    first = results.calls[0][0]
    assert "HTTP 422" in first.error
    assert "********" in first.error
    assert results.calls[1][0].ok
    assert_no_secrets(caplog.text, results.calls, secrets=[NEW])
