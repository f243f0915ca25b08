"""Unit tests of the Rancher target's pure parts: URLs, hosts, names, keys, backoff."""

import re

import pytest

from ecr_agent.config import RancherSettings
from ecr_agent.rancher import (
    RancherTarget,
    normalize_host,
    parse_url,
    split_api_key,
    validate_url,
)
from ecr_agent.rancher_v3 import credential_name

SECRET = "STAND-IN-RANCHER-SECRET-unit"
HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


@pytest.mark.parametrize(
    "url",
    [
        "https://rancher.example.com/v1",
        "https://rancher.example.com/v2-beta/",
        "https://rancher.example.com/v1/projects/1a5",
        "https://rancher.example.com/v2-beta/projects/1a5",
        "http://10.0.0.5:8080/v2-beta/projects/1a12/",
        "https://rancher.example.com/v3/projects/c-abcde:p-fghij",
        "https://rancher.example.com/v3/project/c-abcde:p-fghij",
        "https://rancher.example.com/v3/projects/local:p-fghij",
        "https://rancher.example.com/v3/projects/c-m-abcdefgh:p-fghij/",
        "https://example.com/rancher/v3/projects/c-abcde:p-fghij",
        "https://example.com/rancher/v2-beta/projects/1a5",
    ],
)
def test_validate_url_accepts(url):
    assert validate_url(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "rancher.example.com/v3/projects/c-abcde:p-fghij",
        "ftp://rancher.example.com/v2-beta/projects/1a5",
        "https:///v2-beta/projects/1a5",
        "https://rancher.example.com/",
        "https://rancher.example.com/v3",
        "https://rancher.example.com/v3/projects/p-fghij",
        "https://rancher.example.com/v3/clusters/c-abcde",
        "https://rancher.example.com/v2-beta/projects/1a5/registries",
        "https://rancher.example.com/v2-beta/projects/1a5?limit=5",
        "https://rancher.example.com/v4/projects/1a5",
    ],
)
def test_validate_url_rejects(url):
    problem = validate_url(url)

    assert problem is not None
    assert repr(url) in problem
    assert "/v2-beta/projects/1a5" in problem
    assert "/v3/projects/c-xxxxx:p-xxxxx" in problem


def test_validate_url_hides_userinfo():
    problem = validate_url(f"https://token-abcde:{SECRET}@rancher.example.com/v3/projects/c-a:p-b")

    assert problem is not None
    assert "access_key" in problem
    assert SECRET not in problem


@pytest.mark.parametrize(
    ("url", "api", "project", "project_url"),
    [
        (
            "https://R.example.com/v2-beta/projects/1a5/",
            "v2-beta",
            "1a5",
            "https://r.example.com/v2-beta/projects/1a5",
        ),
        ("https://r.example.com/v1", "v1", None, "https://r.example.com/v1"),
        (
            "https://r.example.com/v3/projects/c-abcde:p-fghij",
            "v3",
            "c-abcde:p-fghij",
            "https://r.example.com/v3/project/c-abcde:p-fghij",
        ),
        (
            "https://r.example.com/sub/v3/project/local:p-fghij",
            "v3",
            "local:p-fghij",
            "https://r.example.com/sub/v3/project/local:p-fghij",
        ),
    ],
)
def test_parse_url(url, api, project, project_url):
    location = parse_url(url)

    assert location.api == api
    assert location.project == project
    assert location.project_url == project_url


def test_parse_url_rejects_with_value_error():
    with pytest.raises(ValueError, match=r"rancher\.url is"):
        parse_url("https://r.example.com/v3/clusters/c-abcde")


@pytest.mark.parametrize(
    "address",
    [
        HOST,
        HOST.upper(),
        f"https://{HOST}",
        f"https://{HOST}/",
        f"HTTPS://{HOST.upper()}:443/",
        f"{HOST}:443",
        f"http://{HOST}/v2/",
        f"  {HOST}  ",
    ],
)
def test_normalize_host_variants(address):
    assert normalize_host(address) == HOST


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ecr-cache.internal:5000", "ecr-cache.internal:5000"),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("public.ecr.aws", "public.ecr.aws"),
    ],
)
def test_normalize_host_keeps_other_ports(address, expected):
    assert normalize_host(address) == expected


@pytest.mark.parametrize(
    ("access_key", "secret_key", "expected"),
    [
        ("AKEXAMPLE", SECRET, ("AKEXAMPLE", SECRET)),
        ("token-abcde", SECRET, ("token-abcde", SECRET)),
        ("", f"token-abcde:{SECRET}", ("token-abcde", SECRET)),
        ("token-abcde", f"token-abcde:{SECRET}", ("token-abcde", SECRET)),
        ("token-other", f"token-abcde:{SECRET}", ("token-other", f"token-abcde:{SECRET}")),
        ("", "", ("", "")),
    ],
)
def test_split_api_key(access_key, secret_key, expected):
    assert split_api_key(access_key, secret_key) == expected


DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (HOST, "ecr-123456789012-dkr-ecr-us-west-2-amazonaws-com"),
        ("public.ecr.aws", "public-ecr-aws"),
        ("ecr-cache.internal:5000", "ecr-cache-internal-5000"),
        (f"https://{HOST.upper()}/", "ecr-123456789012-dkr-ecr-us-west-2-amazonaws-com"),
    ],
)
def test_credential_name(host, expected):
    assert credential_name(host) == expected


def test_credential_name_long_host():
    host = "a" * 40 + ".registry-mirror." + "b" * 40 + ".example.com"

    name = credential_name(host)

    assert len(name) <= 63
    assert DNS_LABEL.match(name)
    assert name != credential_name(host.replace("b", "c"))


class _MaxRandom:
    """A jitter source that always picks the upper bound."""

    def uniform(self, low, high):
        return high


def _target(**kwargs):
    settings = RancherSettings(
        url="https://rancher.example.com/v3/projects/c-abcde:p-fghij",
        access_key="token-abcde",
        secret_key=SECRET,
    )
    return RancherTarget(settings, **kwargs)


def test_backoff_doubles_to_cap():
    target = _target(retry_initial=15.0, retry_max=900.0, rng=_MaxRandom())

    ceilings = [target._backoff(failures) for failures in range(1, 10)]

    assert ceilings == [15.0, 30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 900.0, 900.0]
    assert target._backoff(10_000) == 900.0


def test_backoff_is_full_jitter():
    target = _target(retry_initial=15.0, retry_max=900.0)

    delays = [target._backoff(4) for _ in range(200)]

    assert all(0 <= delay <= 120.0 for delay in delays)
    assert min(delays) < 60.0 < max(delays)


def test_target_repr_hides_secret():
    target = _target(retry_initial=1.0, retry_max=2.0)

    assert SECRET not in repr(target)
    assert "token-abcde" in repr(target)
    assert target.name == "rancher"


def test_publish_nothing_starts_no_worker():
    target = _target(retry_initial=1.0, retry_max=2.0)

    assert target.publish({}) == []
    assert target.flush(0.1) == []
    assert target.results() == []
    target.close()


def test_http_url_warns(caplog):
    settings = RancherSettings(
        url="http://rancher.example.com/v2-beta/projects/1a5",
        access_key="AKEXAMPLE",
        secret_key=SECRET,
    )

    RancherTarget(settings, retry_initial=1.0, retry_max=2.0).close()

    assert "plain http" in caplog.text
    assert SECRET not in caplog.text
