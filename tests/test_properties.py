"""Property-based tests: host names, durations and the renewal policy on generated input."""

from hypothesis import example, given
from hypothesis import strategies as st

from ecr_agent import hosts

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
