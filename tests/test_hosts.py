import pytest

from ecr_agent.hosts import build_host, parse_host, partition_suffix

VALID = [
    # host, account, region, fips, dualstack
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "123456789012", "us-east-1", False, False),
    ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", "123456789012", "us-east-1", True, False),
    ("123456789012.dkr-ecr.eu-west-1.on.aws", "123456789012", "eu-west-1", False, True),
    ("123456789012.dkr-ecr-fips.us-west-2.on.aws", "123456789012", "us-west-2", True, True),
    (
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "123456789012",
        "cn-north-1",
        False,
        False,
    ),
    (
        "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
        "123456789012",
        "cn-northwest-1",
        False,
        True,
    ),
    (
        "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
        "123456789012",
        "us-gov-west-1",
        False,
        False,
    ),
    (
        "123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com",
        "123456789012",
        "us-gov-east-1",
        True,
        False,
    ),
    (
        "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
        "123456789012",
        "eusc-de-east-1",
        False,
        False,
    ),
    (
        "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
        "123456789012",
        "us-iso-east-1",
        False,
        False,
    ),
    (
        "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
        "123456789012",
        "us-isob-east-1",
        False,
        False,
    ),
    (
        "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
        "123456789012",
        "us-isof-south-1",
        False,
        False,
    ),
    (
        "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
        "123456789012",
        "eu-isoe-west-1",
        False,
        False,
    ),
]


@pytest.mark.parametrize(("host", "account", "region", "fips", "dualstack"), VALID)
def test_parse_host_variants(host, account, region, fips, dualstack):
    parsed = parse_host(host)
    assert parsed.host == host
    assert parsed.account == account
    assert parsed.region == region
    assert parsed.fips is fips
    assert parsed.dualstack is dualstack


@pytest.mark.parametrize(("host", "account", "region", "fips", "dualstack"), VALID)
def test_build_host_round_trip(host, account, region, fips, dualstack):
    assert build_host(account, region, fips=fips, dualstack=dualstack) == host


def test_parse_public_host():
    parsed = parse_host("public.ecr.aws")
    assert parsed.public
    assert parsed.account is None
    assert parsed.region is None


@pytest.mark.parametrize(
    "text",
    [
        "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",
        "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.0",
    ],
)
def test_parse_host_tolerates_url_forms(text):
    assert parse_host(text).host == "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no host name"),
        ("docker.io", "not an ECR registry host"),
        ("12345678901.dkr.ecr.us-east-1.amazonaws.com", "not an ECR registry host"),
        ("1234567890123.dkr.ecr.us-east-1.amazonaws.com", "not an ECR registry host"),
        ("123456789012.dkr.ecr.us-east-1.example.com", "unknown domain"),
        ("123456789012.dkr.ecr.useast1.amazonaws.com", "invalid region"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com", "expected"),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com.cn", "expected"),
        ("123456789012.dkr-ecr.us-east-1.amazonaws.com", "expected"),
        ("123456789012.dkr-ecr.us-iso-east-1.on.aws", "no dual-stack"),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com:5000", "unknown domain"),
    ],
)
def test_parse_host_rejects_with_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_host(text)


def test_build_host_rejects_bad_account():
    with pytest.raises(ValueError, match="12 digits"):
        build_host("1234", "us-east-1")


def test_build_host_rejects_dualstack_in_isolated_partition():
    with pytest.raises(ValueError, match="no dual-stack"):
        build_host("123456789012", "us-iso-east-1", dualstack=True)


@pytest.mark.parametrize(
    ("region", "suffix"),
    [
        ("us-east-1", "amazonaws.com"),
        ("us-gov-west-1", "amazonaws.com"),
        ("cn-north-1", "amazonaws.com.cn"),
        ("eusc-de-east-1", "amazonaws.eu"),
        ("us-iso-west-1", "c2s.ic.gov"),
        ("us-isob-east-1", "sc2s.sgov.gov"),
    ],
)
def test_partition_suffix(region, suffix):
    assert partition_suffix(region) == suffix
