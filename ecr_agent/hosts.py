"""ECR registry host names: parse them and build them for every partition ECR serves.

Private registries are ``ACCOUNT.dkr.ecr[-fips].REGION.SUFFIX`` and, dual-stack,
``ACCOUNT.dkr-ecr[-fips].REGION.SUFFIX``, where the suffix depends on the partition
(the same set amazon-ecr-credential-helper's ``ecrPattern`` accepts). ECR Public is
``public.ecr.aws``.
"""

import re
from dataclasses import dataclass

PUBLIC_HOST = "public.ecr.aws"

# Region name prefixes of the partitions with their own DNS suffix, longest first.
_PARTITION_SUFFIXES = (
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-isof-", "csp.hci.ic.gov"),
    ("us-iso-", "c2s.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk"),
    ("eusc-", "amazonaws.eu"),
    ("cn-", "amazonaws.com.cn"),
)
_DEFAULT_SUFFIX = "amazonaws.com"
_DUALSTACK_SUFFIXES = {"amazonaws.com": "on.aws", "amazonaws.com.cn": "on.amazonwebservices.com.cn"}

_SUFFIXES = (
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "on.aws",
    "on.amazonwebservices.com.cn",
    "sc2s.sgov.gov",
    "c2s.ic.gov",
    "csp.hci.ic.gov",
    "cloud.adc-e.uk",
)

# ASCII digits only, and \Z, because \d also matches other scripts' digits and $ also
# matches before a final newline.
REGION_PATTERN = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}\Z")
ACCOUNT_PATTERN = re.compile(r"^[0-9]{12}\Z")

_HOST_PATTERN = re.compile(
    r"^(?P<account>[0-9]{12})\.(?P<service>dkr\.ecr|dkr-ecr)(?P<fips>-fips)?"
    r"\.(?P<region>[a-z0-9-]+)\.(?P<suffix>.+)\Z"
)


@dataclass(frozen=True)
class RegistryHost:
    """The parts of an ECR registry host name; ``account`` and ``region`` are None for
    ECR Public."""

    host: str
    account: str | None
    region: str | None
    fips: bool = False
    dualstack: bool = False

    @property
    def public(self) -> bool:
        return self.account is None


def partition_suffix(region: str) -> str:
    """Return the DNS suffix of the partition that ``region`` belongs to."""
    for prefix, suffix in _PARTITION_SUFFIXES:
        if region.startswith(prefix):
            return suffix
    return _DEFAULT_SUFFIX


def build_host(account: str, region: str, fips: bool = False, dualstack: bool = False) -> str:
    """Build the registry host for an account in a region.

    Raises ValueError for an invalid account or region, or for a dual-stack host in a
    partition that has no dual-stack endpoint.
    """
    if not ACCOUNT_PATTERN.match(account):
        raise ValueError(f"account {account!r} is not 12 digits")
    if not REGION_PATTERN.match(region):
        raise ValueError(f"region {region!r} does not look like a region name (us-east-1)")

    suffix = partition_suffix(region)
    variant = "-fips" if fips else ""
    if not dualstack:
        return f"{account}.dkr.ecr{variant}.{region}.{suffix}"

    if suffix not in _DUALSTACK_SUFFIXES:
        raise ValueError(f"region {region!r} has no dual-stack ECR endpoint")
    return f"{account}.dkr-ecr{variant}.{region}.{_DUALSTACK_SUFFIXES[suffix]}"


def parse_host(text: str) -> RegistryHost:
    """Parse a registry host, also given as a URL or an image reference.

    ``https://``, a trailing path, a ``:443`` port and upper case are accepted; any other
    form raises ValueError with the reason.
    """
    host = _bare_host(text)
    if host == PUBLIC_HOST:
        return RegistryHost(host=host, account=None, region=None)

    match = _HOST_PATTERN.match(host)
    if match is None:
        raise ValueError(
            f"{text!r} is not an ECR registry host "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com or public.ecr.aws)"
        )
    region, suffix = match["region"], match["suffix"]
    if not REGION_PATTERN.match(region):
        raise ValueError(f"{text!r} has an invalid region {region!r}")
    if suffix not in _SUFFIXES:
        raise ValueError(f"{text!r} has an unknown domain {suffix!r}")

    dualstack = match["service"] == "dkr-ecr"
    expected = build_host(match["account"], region, bool(match["fips"]), dualstack)
    if host != expected:
        raise ValueError(f"{text!r} does not match its region's domain; expected {expected!r}")
    return RegistryHost(host, match["account"], region, bool(match["fips"]), dualstack)


def _bare_host(text: str) -> str:
    host = text.strip().lower()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    host = host.split("/", 1)[0]
    if host.endswith(":443"):
        host = host[: -len(":443")]
    if not host:
        raise ValueError(f"{text!r} contains no host name")
    if not host.isascii():
        raise ValueError(f"{text!r} is not an ASCII host name")
    return host
