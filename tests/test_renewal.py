import random
from datetime import UTC, datetime, timedelta

import pytest

from ecr_agent.config import RenewalSettings
from ecr_agent.renewal import MIN_RETRY_DELAY, renewal_time, retry_delay

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOURS_12 = timedelta(hours=12)


def settings(**overrides):
    return RenewalSettings(**overrides)


def test_renewal_at_half_lifetime_without_jitter():
    due = renewal_time(T0, T0 + HOURS_12, T0, settings(jitter=0), random.Random(1))
    assert due == T0 + timedelta(hours=6)


def test_renewal_jitter_stays_within_bound():
    rng = random.Random(7)
    for _ in range(200):
        due = renewal_time(T0, T0 + HOURS_12, T0, settings(jitter=120), rng)
        assert T0 + timedelta(hours=6) <= due <= T0 + timedelta(hours=6, seconds=120)


def test_expired_token_waits_min_interval():
    expired = datetime(2015, 1, 1, tzinfo=UTC)
    due = renewal_time(T0, expired, T0, settings(min_interval=300), random.Random(1))
    assert due == T0 + timedelta(seconds=300)


def test_renewal_never_before_min_interval():
    short = T0 + timedelta(seconds=60)
    due = renewal_time(T0, short, T0, settings(min_interval=300, jitter=0), random.Random(1))
    assert due == T0 + timedelta(seconds=300)


def test_renewal_never_after_expiry():
    expires = T0 + timedelta(minutes=20)
    config = settings(lifetime_fraction=0.9, jitter=3600, min_interval=60)
    rng = random.Random(3)
    for _ in range(100):
        assert renewal_time(T0, expires, T0, config, rng) <= expires


def test_renewal_never_in_the_past():
    later = T0 + timedelta(hours=8)
    due = renewal_time(T0, T0 + HOURS_12, later, settings(jitter=0), random.Random(1))
    assert due == later


@pytest.mark.parametrize("failures", [1, 2, 5, 10, 100])
def test_retry_delay_capped(failures):
    config = settings(retry_initial=15, retry_max=900)
    rng = random.Random(failures)
    cap = min(900, 15 * 2 ** (failures - 1))
    for _ in range(100):
        delay = retry_delay(failures, config, rng)
        assert MIN_RETRY_DELAY <= delay <= max(cap, MIN_RETRY_DELAY)


def test_retry_delay_has_floor():
    config = settings(retry_initial=0.01, retry_max=0.02)
    assert retry_delay(1, config, random.Random(1)) == MIN_RETRY_DELAY
