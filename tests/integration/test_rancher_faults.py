"""The Rancher target's worker under faults: errors, a slow server, Rancher down."""

import logging
import threading

import pytest

import ecr_agent.rancher
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

NEW = "STAND-IN-ECR-PASSWORD-fault-new"
NEWER = "STAND-IN-ECR-PASSWORD-fault-newer"
NEWEST = "STAND-IN-ECR-PASSWORD-fault-newest"


class _MaxRandom:
    """A jitter source that always picks the upper bound."""

    def uniform(self, low, high):
        return high


@pytest.fixture
def rancher():
    server = RancherServer(ACCESS_KEY, SECRET_KEY).start()
    registry = server.add_registry(HOST)
    server.credential_id = server.add_registry_credential(registry, OLD_PASSWORD)
    yield server
    if server._release is not None:
        server._release.set()
    server.stop()


@pytest.fixture
def targets(caplog):
    caplog.set_level(logging.DEBUG)
    made = Targets()
    yield made
    made.close()


def stored_password(rancher):
    return rancher.registry_credentials()[rancher.credential_id]["secretValue"]


def any_ok(calls):
    return any(outcome.ok for outcomes in calls for outcome in outcomes)


def test_server_errors_then_recovery(rancher, targets, caplog):
    rancher.fail_next(3, status=500)
    results = Results()
    target = targets.make(rancher.url_v1(), on_result=results)

    assert target.publish({HOST: ecr_credentials(NEW)}) == []

    assert results.wait_for(any_ok)
    assert results.failures() == 3
    assert "HTTP 500" in results.calls[0][0].error
    assert all(o.target == "rancher" and o.host == HOST for c in results.calls for o in c)
    assert stored_password(rancher) == NEW
    assert target.results()[0].ok
    assert "Rancher update failed 3 time(s) in a row" in caplog.text
    assert_no_secrets(caplog.text, results.calls, secrets=[NEW])


def test_slow_server_never_blocks_publish(rancher, targets, caplog):
    release = rancher.hold()
    results = Results()
    target = targets.make(rancher.url_v1(), on_result=results)

    assert target.publish({HOST: ecr_credentials(NEW)}) == []
    assert rancher.wait_held()
    assert target.publish({HOST: ecr_credentials(NEWER)}) == []
    assert target.publish({HOST: ecr_credentials(NEWEST)}) == []
    assert results.calls == []
    release.set()

    assert results.wait_for(lambda calls: stored_password(rancher) == NEWEST)
    assert_no_secrets(caplog.text, results.calls, secrets=[NEW, NEWER, NEWEST])


def test_flush_times_out_while_server_holds(rancher, targets, caplog):
    release = rancher.hold()
    target = targets.make(rancher.url_v1())
    target.publish({HOST: ecr_credentials(NEW)})
    assert rancher.wait_held()

    waited = target.flush(0.2)
    release.set()
    done = target.flush(30.0)

    assert [(o.host, o.error) for o in waited] == [
        (HOST, "timed out after 0.2 s waiting for Rancher")
    ]
    assert done[0].ok, done
    assert_no_secrets(caplog.text, waited, done, secrets=[NEW])


def test_rancher_down_for_several_attempts(rancher, targets, caplog):
    rancher.stop()
    results = Results()
    target = targets.make(rancher.url_v1(), on_result=results)

    assert target.publish({HOST: ecr_credentials(NEW)}) == []
    assert results.wait_for(lambda calls: len(calls) >= 3)
    assert target.publish({HOST: ecr_credentials(NEWER)}) == []
    assert results.wait_for(lambda calls: len(calls) >= 5)
    rancher.start()

    assert results.wait_for(any_ok)
    assert stored_password(rancher) == NEWER
    first_error = results.calls[0][0].error
    assert f"connection to {rancher.base} failed" in first_error
    assert "Connection refused" in first_error
    assert_no_secrets(caplog.text, results.calls, secrets=[NEW, NEWER])


def test_new_credentials_skip_backoff(rancher, targets, caplog):
    rancher.fail_next(1, status=503)
    results = Results()
    target = targets.make(
        rancher.url_v1(),
        retry_initial=3600.0,
        retry_max=3600.0,
        rng=_MaxRandom(),
        on_result=results,
    )

    target.publish({HOST: ecr_credentials(NEW)})
    assert results.wait_for(lambda calls: len(calls) == 1)
    target.publish({HOST: ecr_credentials(NEWER)})

    assert results.wait_for(any_ok)
    assert "HTTP 503" in results.calls[0][0].error
    assert "next attempt in 3600.0 s" in caplog.text
    assert stored_password(rancher) == NEWER
    assert_no_secrets(caplog.text, results.calls, secrets=[NEW, NEWER])


def test_read_timeout_reported(rancher, targets, caplog, monkeypatch):
    monkeypatch.setattr(ecr_agent.rancher, "TIMEOUT", (5.0, 1.0))
    rancher.delay = 3.0
    target = targets.make(rancher.url_v1())

    target.publish({HOST: ecr_credentials(NEW)})
    outcomes = target.flush(30.0)

    assert f"read from {rancher.base} timed out after 1 s" in outcomes[0].error
    assert_no_secrets(caplog.text, outcomes, secrets=[NEW])


def test_only_failed_hosts_retried(rancher, targets, caplog):
    results = Results()
    target = targets.make(rancher.url_v1(), on_result=results)

    target.publish({HOST: ecr_credentials(NEW), HOST_B: ecr_credentials(NEWER)})
    assert results.wait_for(lambda calls: len(calls) >= 3)

    assert [o.host for o in results.calls[0]] == sorted([HOST, HOST_B])
    assert all([o.host for o in call] == [HOST_B] for call in results.calls[1:])
    assert {o.host: o.ok for o in target.results()} == {HOST: True, HOST_B: False}
    assert rancher.count("PUT") == 1
    assert_no_secrets(caplog.text, results.calls, secrets=[NEW, NEWER])


def test_close_stops_worker(rancher, targets):
    target = targets.make(rancher.url_v1())
    target.publish({HOST: ecr_credentials(NEW)})
    assert target.flush(30.0)[0].ok

    target.close()

    assert not target._thread.is_alive()
    assert target.publish({HOST: ecr_credentials(NEWER)}) == []
    assert stored_password(rancher) == NEW


def test_failing_callback_keeps_worker(rancher, targets, caplog):
    threads = []

    def broken(outcomes):
        threads.append(threading.current_thread().name)
        raise RuntimeError("callback broke")

    target = targets.make(rancher.url_v1(), on_result=broken)
    target.publish({HOST: ecr_credentials(NEW)})
    assert target.flush(30.0)[0].ok
    target.publish({HOST: ecr_credentials(NEWER)})

    assert target.flush(30.0)[0].ok
    assert threads == ["ecr-agent-rancher", "ecr-agent-rancher"]
    assert "recording the Rancher outcomes failed" in caplog.text
    assert stored_password(rancher) == NEWER
