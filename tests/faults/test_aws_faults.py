"""AWS API faults against a running agent: it keeps what it has, backs off and recovers.

Each fault the proxy can inject gets one scenario: ``ecr-agent run`` renews once, the
endpoint starts failing, SIGUSR1 starts a renewal into the fault, the agent retries on its
own, the fault ends and the agent recovers without help. The scenarios run side by side
in threads, because the slow ones (a hung or trickling endpoint) take most of a minute;
each test below checks one property of every scenario.
"""

import concurrent.futures
import itertools
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from ecr_agent import tokens
from ecr_agent.config import AwsSource, Registry, load_config
from ecr_agent.errors import TokenError
from ecr_agent.renewal import MIN_RETRY_DELAY
from tests.aws_proxy import FAULTS, AwsProxy
from tests.faults.harness import (
    HOST,
    AgentUnderTest,
    NotifyReceiver,
    wait_until,
)

WATCHDOG_SECONDS = 60  # WatchdogSec= of the shipped unit
RETRY_MAX = 4.0  # FAST_RENEWAL's retry_max
# Faults that fail at once: the scenario waits for this many failed renewals in a row.
QUICK_FAILURES = 3
SLOW_FAULTS = ("hang", "slow")
# Faults held for a whole minute after the failures above, so that the call rate is
# measured over the window the bound is stated for.
MINUTE_FAULTS = ("500", "throttle")


@dataclass
class Scenario:
    fault: str
    good_password: str | None = None
    file_before: bytes = b""
    file_during: bytes = b""
    status_code: int | None = None
    status: dict | None = None
    failing_for: float = 0.0
    failing_calls: list[float] = field(default_factory=list)
    recovered: bool = False
    final_password: str | None = None
    last_issued: str | None = None
    watchdog_times: list[float] = field(default_factory=list)
    log: str = ""
    exit_code: int | None = None
    problem: str | None = None


def run_scenario(fault: str, moto_url: str, directory) -> Scenario:
    scenario = Scenario(fault)
    directory.mkdir(parents=True, exist_ok=True)
    proxy = AwsProxy(moto_url, expires_in=3600, rotate_passwords=True).start()
    receiver = NotifyReceiver(directory / "notify.sock")
    env = {"NOTIFY_SOCKET": receiver.path, "WATCHDOG_USEC": str(WATCHDOG_SECONDS * 1_000_000)}
    agent = AgentUnderTest(directory, proxy.url, env=env)
    try:
        agent.write()
        running = agent.start("run")
        running.wait_started()
        if not wait_until(lambda: agent.registry_state().get("last_success"), 60):
            scenario.problem = "the first renewal did not succeed"
            return scenario
        scenario.good_password = agent.password_of()
        scenario.file_before = agent.docker_config.read_bytes()

        first_fail = proxy.token_calls()
        started = time.monotonic()
        proxy.fail(fault)
        running.signal(signal.SIGUSR1)
        expected = 1 if fault in SLOW_FAULTS else QUICK_FAILURES
        bound = tokens.CALL_TIMEOUT + 30 if fault in SLOW_FAULTS else 60
        failed = wait_until(lambda: agent.registry_state().get("failures", 0) >= expected, bound)
        if fault in MINUTE_FAULTS:
            time.sleep(60)
        scenario.file_during = agent.docker_config.read_bytes()
        scenario.status_code, scenario.status = agent.status_json()
        proxy.fail(None)
        scenario.failing_for = time.monotonic() - started
        scenario.failing_calls = proxy.token_call_times()[first_fail:]
        if not failed:
            scenario.problem = f"fewer than {expected} failures recorded within {bound} s"

        scenario.recovered = wait_until(
            lambda: (
                agent.registry_state().get("failures") == 0
                and agent.password_of() != scenario.good_password
            ),
            tokens.CALL_TIMEOUT + 30,
        )
        scenario.final_password = agent.password_of()
        scenario.last_issued = proxy.last_password()
        scenario.exit_code = running.stop()
        scenario.log = running.log()
        scenario.watchdog_times = receiver.times_of("WATCHDOG=1")
        return scenario
    finally:
        agent.cleanup()
        receiver.close()
        proxy.stop()


@pytest.fixture(scope="module")
def scenarios(moto_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    with concurrent.futures.ThreadPoolExecutor(len(FAULTS)) as pool:
        futures = {
            fault: pool.submit(run_scenario, fault, moto_server.url, base / fault.replace("-", ""))
            for fault in FAULTS
        }
        return {fault: future.result() for fault, future in futures.items()}


@pytest.fixture(params=FAULTS)
def scenario(request, scenarios):
    result = scenarios[request.param]
    assert result.problem is None, f"{result.fault}: {result.problem}\n{result.log}"
    return result


def retry_delays(log: str) -> list[float]:
    return [float(value) for value in re.findall(r"; retry in (\d+) s", log)]


def test_fault_keeps_last_good_credentials(scenario):
    assert scenario.good_password
    assert scenario.file_during == scenario.file_before


def test_fault_reported_in_status(scenario):
    row = scenario.status["registries"][0]
    assert row["host"] == HOST
    assert row["failures"] >= 1
    assert row["last_error"].startswith("token request failed for us-east-1")
    assert row["valid"] is True
    assert scenario.status_code == 0


def test_fault_logged_with_validity(scenario):
    errors = [line for line in scenario.log.splitlines() if line.startswith("<3>token request")]
    assert errors
    assert all("the credentials in place are valid until" in line for line in errors)


def test_fault_backoff_within_retry_max(scenario):
    delays = retry_delays(scenario.log)
    assert delays
    assert all(MIN_RETRY_DELAY <= delay <= RETRY_MAX for delay in delays)


def test_backoff_has_jitter(scenarios):
    delays = [delay for s in scenarios.values() for delay in retry_delays(s.log)[2:]]
    assert len(set(delays)) > 1, delays


def test_fault_recovers_by_itself(scenario):
    assert scenario.recovered
    assert scenario.final_password == scenario.last_issued
    assert "<6>renewed " + HOST in scenario.log.split("token request failed")[-1]
    assert scenario.exit_code == 0


def test_fault_call_rate_bounded(scenario):
    """At most MAX_ATTEMPTS calls per failed renewal, renewals MIN_RETRY_DELAY apart."""
    attempts = tokens.MAX_ATTEMPTS
    per_minute = attempts * (60 / MIN_RETRY_DELAY + 1)
    times = scenario.failing_calls
    busiest = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    window = min(60.0, scenario.failing_for)
    bound = attempts * (window / MIN_RETRY_DELAY + 1)
    print(f"{scenario.fault}: at most {busiest} calls in {window:.0f} s, bound {bound:.0f}")
    assert busiest <= bound <= per_minute
    if scenario.fault in MINUTE_FAULTS:
        assert window == 60.0


def test_fault_never_starves_watchdog(scenario):
    """systemd restarts the service when WATCHDOG=1 is missing for WatchdogSec."""
    times = scenario.watchdog_times
    assert len(times) >= 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < WATCHDOG_SECONDS - 10, gaps


def test_token_call_bounded_below_watchdog():
    """The maximum time of a token request leaves the watchdog a margin."""
    assert tokens.CALL_TIMEOUT <= WATCHDOG_SECONDS - 15
    hang = tokens.MAX_ATTEMPTS * (tokens.CONNECT_TIMEOUT + tokens.READ_TIMEOUT)
    backoff = sum(2**attempt for attempt in range(tokens.MAX_ATTEMPTS - 1))
    assert hang + backoff <= tokens.CALL_TIMEOUT


def test_trickling_answer_given_up(agent, proxy, monkeypatch):
    """A byte every half second never trips the read timeout, so CALL_TIMEOUT ends it."""
    agent.write()
    for name, value in agent.env.items():
        monkeypatch.setenv(name, value)
    client = tokens.TokenClient(lambda: datetime.now(UTC), call_timeout=2)
    request = tokens.plan_requests(load_config(agent.config).registries)[0]
    proxy.fail("slow")

    started = time.monotonic()
    with pytest.raises(TokenError, match="timed out after 2 s"):
        client.fetch(request)
    assert time.monotonic() - started < 10

    proxy.fail(None)
    assert client.fetch(request).credentials[HOST].password == proxy.last_password()


def test_client_construction_error_is_token_error(monkeypatch, tmp_path):
    """An endpoint botocore rejects fails its token request; it does not end the pass."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASTANDINKEY000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "STAND-IN-AWS-SECRET-KEY-do-not-log")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    source = AwsSource(region="us-east-1", endpoint_url="http://ecr local:5000")
    registry = Registry(HOST, "123456789012", source)
    request = tokens.TokenRequest(source, (registry,))
    client = tokens.TokenClient(lambda: datetime.now(UTC))

    client.prepare([request])
    with pytest.raises(TokenError, match="Invalid endpoint"):
        client.fetch(request)
