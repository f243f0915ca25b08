"""Property-based tests: host names, durations and the renewal policy on generated input."""

import math
import random
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ecr_agent import hosts
from ecr_agent.config import MAX_DURATION, RenewalSettings, parse_duration
from ecr_agent.renewal import MIN_RETRY_DELAY, renewal_time, retry_delay

ACCOUNTS = st.text(alphabet="0123456789", min_size=12, max_size=12)
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9)
PARTITION_PREFIXES = ("", "cn-", "us-gov-", "us-iso-", "us-isob-", "us-isof-", "eu-isoe-", "eusc-")


@st.composite
def regions(draw):
    """Region names as AWS forms them: a partition prefix, words, a number."""
    prefix = draw(st.sampled_from(PARTITION_PREFIXES))
    if not prefix:
        prefix = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=4))
        prefix += "-"
    words = draw(st.lists(WORDS, min_size=1, max_size=3))
    number = draw(st.integers(min_value=1, max_value=99))
    return f"{prefix}{'-'.join(words)}-{number}"


def has_dualstack(region: str) -> bool:
    return hosts.partition_suffix(region) in ("amazonaws.com", "amazonaws.com.cn")


# -- host names --------------------------------------------------------------------------


@given(ACCOUNTS, regions(), st.booleans(), st.booleans())
def test_build_then_parse_round_trip(account, region, fips, dualstack):
    if dualstack and not has_dualstack(region):
        try:
            hosts.build_host(account, region, fips, dualstack)
        except ValueError:
            return
        raise AssertionError(f"{region} has no dual-stack endpoint, but a host was built")

    host = hosts.build_host(account, region, fips, dualstack)
    parsed = hosts.parse_host(host)

    assert parsed == hosts.RegistryHost(host, account, region, fips, dualstack)


@given(ACCOUNTS, regions(), st.booleans())
def test_parse_accepts_url_forms(account, region, fips):
    host = hosts.build_host(account, region, fips)
    for text in (f"https://{host}/", f"https://{host}:443/team/app", host.upper()):
        assert hosts.parse_host(text).host == host


@given(st.text())
@example("123456789012.dkr.ecr.us-east-1.amazonaws.com\n")
@example("https://")
@example("\u0661" * 12 + ".dkr.ecr.us-east-1.amazonaws.com")
def test_parse_raises_only_value_error(text):
    try:
        parsed = hosts.parse_host(text)
    except ValueError:
        return
    assert parsed.host.isascii()
    assert hosts.parse_host(parsed.host) == parsed


@given(st.text(max_size=20), st.text(max_size=20), st.booleans(), st.booleans())
@example("123456789012\n", "us-east-1", False, False)
@example("123456789012", "us-east-1\n", False, False)
@example("\u0661" * 12, "us-east-1", False, False)
@example("123456789012", "us-east-\u0661", False, False)
def test_build_accepts_only_what_parse_reads_back(account, region, fips, dualstack):
    """Whatever build_host accepts is a plain host name that parse_host reads back."""
    try:
        host = hosts.build_host(account, region, fips, dualstack)
    except ValueError:
        return
    assert host.isascii()
    assert host == host.strip()
    assert hosts.parse_host(host) == hosts.RegistryHost(host, account, region, fips, dualstack)


# -- durations ---------------------------------------------------------------------------

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
PARTS = st.tuples(
    st.integers(min_value=0, max_value=9999),
    st.none() | st.integers(min_value=0, max_value=999),
    st.sampled_from(sorted(UNITS)),
)


@given(st.lists(PARTS, min_size=1, max_size=4))
def test_duration_format_parse_round_trip(parts):
    text = "".join(
        f"{whole}{'' if fraction is None else f'.{fraction}'}{unit}"
        for whole, fraction, unit in parts
    )
    seconds = sum(
        float(f"{whole}.{fraction or 0}") * UNITS[unit] for whole, fraction, unit in parts
    )

    if seconds > MAX_DURATION:
        try:
            parse_duration(text)
        except ValueError:
            return
        raise AssertionError(f"{text} is longer than {MAX_DURATION} s, but was accepted")
    assert math.isclose(parse_duration(text), seconds, rel_tol=1e-9, abs_tol=1e-9)


@given(st.integers(min_value=0, max_value=int(MAX_DURATION)))
def test_duration_integer_seconds(seconds):
    assert parse_duration(seconds) == seconds


@given(st.text(max_size=30) | st.floats() | st.integers() | st.booleans() | st.none())
@example("9" * 400 + "s")
@example(float("inf"))
@example(float("nan"))
@example(10**30)
@example(10**400)
@example("\u0663s")
@example(" 90s ")
@example("90S")
def test_duration_garbage_raises_only_value_error(value):
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds)
    assert seconds <= MAX_DURATION
    if isinstance(value, str):
        assert seconds >= 0
        assert value.isascii()
        assert value == value.strip().lower()


# -- renewal policy ----------------------------------------------------------------------

MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
SECONDS = st.floats(min_value=0.001, max_value=7 * 86400, allow_nan=False)


@st.composite
def renewal_settings(draw):
    retry_initial = draw(SECONDS)
    return RenewalSettings(
        lifetime_fraction=draw(st.floats(min_value=0.01, max_value=0.99)),
        min_interval=draw(SECONDS),
        jitter=draw(st.floats(min_value=0, max_value=86400)),
        retry_initial=retry_initial,
        retry_max=draw(st.floats(min_value=retry_initial, max_value=7 * 86400)),
    )


@settings(max_examples=500)
@given(
    MOMENTS,
    st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=2)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(minutes=5)),
    renewal_settings(),
    st.integers(min_value=0, max_value=2**32),
)
def test_renewal_time_bounds(requested_at, lifetime, call_time, settings_, seed):
    expires_at = requested_at + lifetime
    now = requested_at + call_time
    due = renewal_time(requested_at, expires_at, now, settings_, random.Random(seed))
    min_interval = timedelta(seconds=settings_.min_interval)

    assert due >= now
    assert due >= requested_at + min_interval
    if lifetime >= min_interval and now <= expires_at:
        assert due <= expires_at


@settings(max_examples=500)
@given(st.integers(min_value=1, max_value=10**6), renewal_settings(), st.integers(0, 2**32))
def test_retry_delay_within_bounds(failures, settings_, seed):
    delay = retry_delay(failures, settings_, random.Random(seed))
    cap = min(settings_.retry_max, settings_.retry_initial * 2 ** min(failures - 1, 64))

    assert delay >= MIN_RETRY_DELAY
    assert delay <= max(MIN_RETRY_DELAY, cap)
    assert delay <= max(MIN_RETRY_DELAY, settings_.retry_max)
