"""The renewal loop with its clock, token client and targets passed in."""

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ecr_agent.agent import Agent
from ecr_agent.config import (
    AgentSettings,
    AwsSource,
    Config,
    DockerSettings,
    Registry,
    RenewalSettings,
)
from ecr_agent.credentials import Credentials
from ecr_agent.errors import TokenError
from ecr_agent.targets import Outcome
from ecr_agent.tokens import TokenResult

PASSWORD = "STAND-IN-ECR-PASSWORD"
HOST_A = "111111111111.dkr.ecr.us-east-1.amazonaws.com"
HOST_B = "222222222222.dkr.ecr.eu-west-1.amazonaws.com"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self):
        return self.now


class FakeTokens:
    """Answers token requests from a table; a region listed in ``failing`` fails."""

    def __init__(self, clock, lifetime=timedelta(hours=12)):
        self.clock = clock
        self.lifetime = lifetime
        self.failing: set[str] = set()
        self.calls = 0

    def prepare(self, requests):
        pass

    def reset(self):
        pass

    def fetch(self, request):
        self.calls += 1
        if request.source.region in self.failing:
            raise TokenError(request.label, "ThrottlingException: Rate exceeded")
        now = self.clock()
        credentials = {
            registry.host: Credentials("AWS", PASSWORD, now, now + self.lifetime)
            for registry in request.registries
        }
        return TokenResult(credentials, {})


class RecordingTarget:
    def __init__(self, name, error=None):
        self.name = name
        self.error = error
        self.published = []

    def publish(self, hosts):
        self.published.append(dict(hosts))
        return [Outcome(self.name, error=self.error)]

    def close(self):
        pass


def make_config(tmp_path):
    registries = (
        Registry(HOST_A, "111111111111", AwsSource(region="us-east-1")),
        Registry(HOST_B, "222222222222", AwsSource(region="eu-west-1"), ("cache.internal",)),
    )
    return Config(
        path=Path(tmp_path / "ecr-agent.toml"),
        agent=AgentSettings(state_dir=tmp_path / "state"),
        renewal=RenewalSettings(jitter=0),
        registries=registries,
        docker=DockerSettings(),
    )


def make_agent(tmp_path, targets):
    clock = Clock()
    tokens = FakeTokens(clock)
    agent = Agent(
        make_config(tmp_path),
        wall_clock=clock,
        rng=random.Random(1),
        target_factory=lambda config, on_result: targets,
        token_client=tokens,
    )
    return agent, clock, tokens


def test_failing_target_does_not_stop_others(tmp_path):
    broken = RecordingTarget("broken", error="disk full")
    healthy = RecordingTarget("healthy")
    agent, _, _ = make_agent(tmp_path, [broken, healthy])

    assert agent.renew(force=True) is False
    assert set(healthy.published[0]) == {HOST_A, HOST_B, "cache.internal"}
    assert agent.registries[HOST_A].targets["broken"].error == "disk full"
    assert agent.registries[HOST_A].targets["healthy"].ok


def test_failing_region_keeps_other_region(tmp_path):
    target = RecordingTarget("files")
    agent, _, tokens = make_agent(tmp_path, [target])
    tokens.failing.add("eu-west-1")

    assert agent.renew(force=True) is False
    assert set(target.published[0]) == {HOST_A}
    assert agent.registries[HOST_B].failures == 1
    assert "ThrottlingException" in agent.registries[HOST_B].last_error


def test_only_due_requests_renew(tmp_path):
    agent, clock, tokens = make_agent(tmp_path, [RecordingTarget("files")])
    agent.renew(force=True)
    assert tokens.calls == 2

    clock.now += timedelta(hours=1)
    agent.renew()
    assert tokens.calls == 2

    clock.now += timedelta(hours=5, seconds=1)
    agent.renew()
    assert tokens.calls == 4


def test_failure_retries_after_backoff(tmp_path):
    agent, clock, tokens = make_agent(tmp_path, [RecordingTarget("files")])
    tokens.failing.add("us-east-1")
    agent.renew(force=True)
    due = min(agent.due.values())

    assert clock.now < due <= clock.now + timedelta(seconds=15)
    tokens.failing.clear()
    clock.now = due
    assert agent.renew() is True
    assert agent.registries[HOST_A].failures == 0


def test_status_line_is_one_line_without_secret(tmp_path):
    agent, _, tokens = make_agent(tmp_path, [RecordingTarget("files")])
    tokens.failing.add("eu-west-1")
    agent.renew(force=True)
    line = agent.status_line()

    assert "\n" not in line
    assert line.startswith("1 of 2 registries valid; soonest expiry 2026-01-01T12:00:00+00:00")
    assert "last error: token request failed for eu-west-1" in line
    assert PASSWORD not in line


def test_state_file_has_no_secret(tmp_path):
    agent, _, _ = make_agent(tmp_path, [RecordingTarget("files")])
    agent.renew(force=True)
    state = (tmp_path / "state" / "state.json").read_text()

    assert HOST_A in state
    assert PASSWORD not in state
    assert (tmp_path / "state" / "state.json").stat().st_mode & 0o777 == 0o600


def test_failed_target_is_retried(tmp_path):
    target = RecordingTarget("daemon", error="connection refused")
    agent, clock, tokens = make_agent(tmp_path, [target])
    agent.renew(force=True)
    retry_at = agent.target_due["daemon"]

    assert clock.now < retry_at <= clock.now + timedelta(seconds=15)
    agent.retry_targets()
    assert len(target.published) == 1

    target.error = None
    clock.now = retry_at
    agent.retry_targets()
    assert len(target.published) == 2
    assert set(target.published[1]) == {HOST_A, HOST_B, "cache.internal"}
    assert "daemon" not in agent.target_due
    assert tokens.calls == 2


def test_state_survives_restart(tmp_path):
    first, _, _ = make_agent(tmp_path, [RecordingTarget("files")])
    first.renew(force=True)

    second, _, tokens = make_agent(tmp_path, [RecordingTarget("files")])
    tokens.failing.update({"us-east-1", "eu-west-1"})
    second.renew(force=True)

    assert second.registries[HOST_A].expires_at == "2026-01-01T12:00:00+00:00"
    assert second.registries[HOST_A].last_success == "2026-01-01T00:00:00+00:00"
    assert second.registries[HOST_A].targets == {}
    assert second.status_line().startswith("2 of 2 registries valid")


def test_one_shot_failure_promises_no_retry(tmp_path, caplog):
    agent, _, tokens = make_agent(tmp_path, [RecordingTarget("files")])
    tokens.failing.add("eu-west-1")
    agent.refresh()

    assert "ThrottlingException" in caplog.text
    assert "retry in" not in caplog.text
