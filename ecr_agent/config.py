"""Configuration: the TOML file, its defaults and its validation."""

import ipaddress
import math
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ecr_agent import hosts
from ecr_agent.errors import ConfigError

if sys.version_info >= (3, 11):  # noqa: UP036 - tomli serves older Pythons
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_PATH = Path("/etc/ecr-agent/ecr-agent.toml")
DEFAULT_REGION = "us-east-1"

# Maximum duration accepted, in seconds. Longer ones have no use in renewing 12-hour
# tokens, and far longer ones overflow datetime arithmetic in the renewal loop.
MAX_DURATION = 365 * 86400.0


@dataclass(frozen=True)
class AgentSettings:
    state_dir: Path = Path("/var/lib/ecr-agent")
    log_level: str = "info"


@dataclass(frozen=True)
class RenewalSettings:
    """Renewal timing; every duration is in seconds."""

    lifetime_fraction: float = 0.5
    min_interval: float = 300.0
    jitter: float = 120.0
    retry_initial: float = 15.0
    retry_max: float = 900.0


@dataclass(frozen=True)
class AwsSource:
    """The origin of a token: the credential source, region and endpoint."""

    region: str
    profile: str = ""
    role_arn: str = ""
    external_id: str = ""
    role_session_name: str = "ecr-agent"
    endpoint_url: str = ""
    sts_endpoint_url: str = ""
    public: bool = False
    fips: bool = False
    dualstack: bool = False


@dataclass(frozen=True)
class Registry:
    """One configured registry: ``account`` is None for ECR Public."""

    host: str
    account: str | None
    source: AwsSource
    aliases: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        return self.source.public


@dataclass(frozen=True)
class DockerSettings:
    config_files: tuple[Path, ...] = (Path("/root/.docker/config.json"),)
    users: tuple[str, ...] = ()
    host: str = "unix:///var/run/docker.sock"
    verify_login: bool = True
    swarm_services: bool = False


@dataclass(frozen=True)
class RancherSettings:
    """Rancher reporting; ``secret_key`` is already read from its file or credential."""

    url: str
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    secret_key_file: str = ""
    ca_file: str = ""
    create_missing: bool = False


@dataclass(frozen=True)
class Config:
    path: Path
    agent: AgentSettings
    renewal: RenewalSettings
    registries: tuple[Registry, ...]
    docker: DockerSettings
    rancher: RancherSettings | None = None


class _Problems:
    """Collects validation problems, each with its table path and, when found, its line."""

    def __init__(self, text: str):
        self.items: list[str] = []
        self._lines = text.splitlines()

    def add(self, path: str, message: str) -> None:
        line = _line_of(self._lines, path)
        suffix = f" (line {line})" if line else ""
        self.items.append(f"{path}: {message}{suffix}")


def _line_of(lines: list[str], path: str) -> int | None:
    """Find the line of a key given as ``table.key`` or ``registry[2].key``.

    A best-effort scan of table headers; tomllib reports no positions for valid TOML.
    """
    match = re.match(r"^(?P<table>[a-z_]+)(\[(?P<index>\d+)\])?(\.(?P<key>[a-z_]+))?", path)
    if match is None:
        return None
    table, key = match["table"], match["key"]
    index = int(match["index"]) if match["index"] else None

    seen = -1
    inside = False
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        header = re.match(r"^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?", line)
        if header:
            inside = header[1] == table
            if inside and line.startswith("[["):
                seen += 1
                inside = index is None or seen == index
            if inside and key is None:
                return number
            continue
        if inside and key and re.match(rf"^{key}\s*=", line):
            return number
    return None


TOKEN_LIFETIME = 12 * 3600.0  # seconds an ECR authorization token is valid
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# The patterns are ASCII-only and end in \Z, because \d and \w also match other
# scripts' characters and $ also matches before a final newline.
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}\Z", re.ASCII)
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}\Z", re.ASCII)
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]*\$?\Z", re.IGNORECASE | re.ASCII)
_ALIAS = re.compile(
    r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?\Z"
)
# Dot-separated labels of letters, digits and inner hyphens, as botocore checks endpoints.
_HOST_NAME = re.compile(
    r"^((?!-)[a-z0-9-]{1,63}(?<!-)\.)*((?!-)[a-z0-9-]{1,63}(?<!-))\.?\Z", re.ASCII
)
_LOG_LEVELS = ("debug", "info", "warning", "error")
_DOCKER_SCHEMES = ("unix://", "tcp://", "http://", "https://", "ssh://")

_TABLE_KEYS = {
    "agent": {"state_dir", "log_level"},
    "renewal": {"lifetime_fraction", "min_interval", "jitter", "retry_initial", "retry_max"},
    "aws": {
        "region",
        "profile",
        "role_arn",
        "external_id",
        "role_session_name",
        "endpoint_url",
        "sts_endpoint_url",
    },
    "docker": {"config_files", "users", "host", "verify_login", "swarm_services"},
    "rancher": {"url", "access_key", "secret_key", "secret_key_file", "ca_file", "create_missing"},
}
_SOURCE_KEYS = _TABLE_KEYS["aws"] - {"region"}
_REGISTRY_KEYS = {"account", "region", "public", "aliases", "fips", "dualstack"} | _SOURCE_KEYS


def parse_duration(value) -> float:
    """Parse ``"90s"``, ``"15m"``, ``"1h30m"`` or a number of seconds into seconds.

    Raises ValueError naming the accepted forms, also for a value that is not finite or
    is longer than MAX_DURATION. A negative number is returned for the caller to reject.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError('must be a duration such as "90s", "15m" or "6h"')
    if isinstance(value, str):
        parts = _DURATION_PART.findall(value)
        if not value or "".join(number + unit for number, unit in parts) != value:
            raise ValueError(
                'must be a number with a unit (ms, s, m, h, d), such as "90s", "15m" or "6h"'
            )
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number of seconds")
    else:
        seconds = value

    # Compared before float(), which raises OverflowError for an int past 1.8e308.
    if not -MAX_DURATION <= seconds <= MAX_DURATION:
        raise ValueError(f'must be at most {MAX_DURATION / 86400:g} days ("365d")')
    return float(seconds)


def load_config(path, environ=None, secrets: str = "read") -> Config:
    """Read, validate and return the configuration at ``path``.

    ``secrets`` says what to do with the Rancher secret key: "read" it (the service),
    "check" it where it can be read but accept a systemd credential name outside the
    service (check-config), or "skip" it (status). Raises ConfigError listing every
    problem found, each with its table path.
    """
    environ = os.environ if environ is None else environ
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = _os_reason(error)
        if isinstance(error, PermissionError):
            reason += "; run ecr-agent as root or give this user read access"
        raise ConfigError(path, [f"cannot read the file: {reason}"]) from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [f"invalid TOML: {error}"]) from error

    problems = _Problems(text)
    config = _build(path, data, problems, environ, secrets)
    if problems.items:
        raise ConfigError(path, problems.items)
    return config


def _os_reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _build(path, data, problems, environ, secrets):
    for name in data:
        if name not in _TABLE_KEYS and name != "registry":
            problems.add(name, "unknown table or key; expected one of " + _names(_TABLE_KEYS))
    tables = {name: _table(data, name, problems) for name in _TABLE_KEYS}

    agent = _agent(tables["agent"], problems)
    renewal = _renewal(tables["renewal"], problems)
    defaults = _aws_defaults(tables["aws"], problems)
    registries = _registries(data.get("registry"), defaults, problems)
    docker = _docker(tables["docker"], problems)
    rancher = _rancher(tables["rancher"], problems, environ, secrets)

    has_target = docker.config_files or docker.users or rancher
    if not has_target and not (docker.verify_login or docker.swarm_services):
        problems.add(
            "docker",
            "no target: set docker.config_files, docker.users, rancher.url, "
            "or turn on docker.verify_login",
        )
    return Config(path, agent, renewal, registries, docker, rancher)


def _names(keys) -> str:
    return ", ".join(sorted(keys))


def _table(data, name, problems) -> dict:
    table = data.get(name, {})
    if not isinstance(table, dict):
        problems.add(name, f"must be a table ([{name}]), not a {type(table).__name__}")
        return {}
    for key in table:
        if key not in _TABLE_KEYS[name]:
            problems.add(
                f"{name}.{key}", f"unknown key; expected one of {_names(_TABLE_KEYS[name])}"
            )
    return table


def _get(table, name, key, kind, default, problems):
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = {str: "a string", bool: "true or false", float: "a number", list: "a list"}
        problems.add(f"{name}.{key}", f"is {_toml_value(value)}, but must be {expected[kind]}")
        return default
    return value


def _toml_value(value) -> str:
    """Show a value as it is written in TOML: true, not True."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _agent(table, problems) -> AgentSettings:
    default = AgentSettings()
    state_dir = _get(table, "agent", "state_dir", str, str(default.state_dir), problems)
    if not state_dir.startswith("/"):
        problems.add("agent.state_dir", f"is {state_dir!r}, but must be an absolute path")
    elif os.path.exists(state_dir) and not os.path.isdir(state_dir):
        problems.add("agent.state_dir", f"is {state_dir!r}, which is not a directory")
    log_level = _get(table, "agent", "log_level", str, default.log_level, problems)
    if log_level not in _LOG_LEVELS:
        problems.add(
            "agent.log_level", f"is {log_level!r}, but must be one of {', '.join(_LOG_LEVELS)}"
        )
    return AgentSettings(Path(state_dir), log_level)


def _renewal(table, problems) -> RenewalSettings:
    default = RenewalSettings()
    values = {}
    for key in ("min_interval", "jitter", "retry_initial", "retry_max"):
        raw = table.get(key, getattr(default, key))
        try:
            seconds = parse_duration(raw)
        except ValueError as error:
            problems.add(f"renewal.{key}", f"is {raw!r}, but {error}")
            seconds = getattr(default, key)
        if seconds < 0 or (seconds == 0 and key != "jitter"):
            problems.add(f"renewal.{key}", f"is {raw!r}, but must be positive")
            seconds = getattr(default, key)
        values[key] = seconds

    fraction = _get(
        table, "renewal", "lifetime_fraction", float, default.lifetime_fraction, problems
    )
    if not 0 < fraction < 1:
        problems.add("renewal.lifetime_fraction", f"is {fraction!r}, but must be between 0 and 1")
        fraction = default.lifetime_fraction
    for key in ("min_interval", "retry_max"):
        if values[key] > TOKEN_LIFETIME:
            problems.add(
                f"renewal.{key}",
                f"is {values[key]:g} s, but must be at most 12h, the time an ECR token lasts",
            )
    if values["retry_max"] < values["retry_initial"]:
        problems.add(
            "renewal.retry_max", "is shorter than renewal.retry_initial; raise it or lower that"
        )
    return RenewalSettings(lifetime_fraction=fraction, **values)


def _aws_defaults(table, problems) -> dict:
    defaults = {"region": _get(table, "aws", "region", str, DEFAULT_REGION, problems)}
    if defaults["region"]:
        _check_region("aws.region", defaults["region"], problems)
    defaults.update(_source_keys(table, "aws", {}, problems))
    return defaults


def _source_keys(table, name, inherited, problems) -> dict:
    values = {}
    for key in sorted(_SOURCE_KEYS):
        fallback = inherited.get(key, "ecr-agent" if key == "role_session_name" else "")
        values[key] = _get(table, name, key, str, fallback, problems)

    for key in ("endpoint_url", "sts_endpoint_url"):
        problem = values[key] and url_problem(values[key])
        if problem:
            problems.add(f"{name}.{key}", problem)
    if values["role_arn"] and not _ROLE_ARN.match(values["role_arn"]):
        problems.add(
            f"{name}.role_arn",
            f"is {values['role_arn']!r}, but must be an IAM role ARN "
            "(arn:aws:iam::123456789012:role/NAME)",
        )
    if values["external_id"] and not values["role_arn"]:
        problems.add(f"{name}.external_id", "is set, but role_arn is not; external_id needs a role")
    if not _SESSION_NAME.match(values["role_session_name"]):
        problems.add(
            f"{name}.role_session_name",
            f"is {values['role_session_name']!r}, but must be 2-64 characters of "
            "letters, digits and +=,.@_-",
        )
    return values


def _check_region(path, region, problems) -> None:
    if not hosts.REGION_PATTERN.match(region):
        problems.add(path, f"is {region!r}, but must be a region name such as us-east-1")


def _registries(entries, defaults, problems) -> tuple[Registry, ...]:
    if entries is None or entries == []:
        problems.add("registry", "no [[registry]] table; add at least one registry")
        return ()
    if not isinstance(entries, list):
        problems.add("registry", "must be an array of tables ([[registry]])")
        return ()

    named = []
    for index, entry in enumerate(entries):
        registry = _registry(f"registry[{index}]", entry, defaults, problems)
        if registry is not None:
            named.append((f"registry[{index}]", registry))

    seen: dict[str, str] = {}
    for name, registry in named:
        if registry.host in registry.aliases:
            problems.add(f"{name}.aliases", f"lists the registry's own host {registry.host}")
        for host in dict.fromkeys((registry.host, *registry.aliases)):
            if host in seen and seen[host] != name:
                problems.add(name, f"repeats host {host} of {seen[host]}")
            seen.setdefault(host, name)
    return tuple(registry for _, registry in named)


def _registry(name, entry, defaults, problems) -> Registry | None:
    if not isinstance(entry, dict):
        problems.add(name, "must be a table")
        return None
    for key in entry:
        if key not in _REGISTRY_KEYS:
            problems.add(f"{name}.{key}", f"unknown key; expected one of {_names(_REGISTRY_KEYS)}")

    public = _get(entry, name, "public", bool, False, problems)
    fips = _get(entry, name, "fips", bool, False, problems)
    dualstack = _get(entry, name, "dualstack", bool, False, problems)
    aliases = _aliases(name, entry, problems)
    source_keys = _source_keys(entry, name, defaults, problems)

    if public:
        for key in ("account", "region", "fips", "dualstack"):
            if key in entry:
                problems.add(f"{name}.{key}", "is set, but a public registry takes no " + key)
        source = AwsSource(region="us-east-1", public=True, **source_keys)
        return Registry(hosts.PUBLIC_HOST, None, source, aliases)

    if "account" not in entry:
        problems.add(name, 'missing account; set account = "123456789012" or public = true')
        return None
    if not isinstance(entry["account"], str):
        problems.add(
            f"{name}.account",
            f"is {_toml_value(entry['account'])}, but must be a quoted string of 12 digits",
        )
        return None
    account = entry["account"]
    region = _get(entry, name, "region", str, defaults["region"], problems)
    if not hosts.ACCOUNT_PATTERN.match(account):
        problems.add(f"{name}.account", f"is {account!r}, but must be 12 digits")
        return None
    if not region:
        problems.add(name, "missing region; set region here or in [aws]")
        return None
    if not hosts.REGION_PATTERN.match(region):
        _check_region(f"{name}.region", region, problems)
        return None
    try:
        host = hosts.build_host(account, region, fips=fips, dualstack=dualstack)
    except ValueError as error:
        problems.add(name, str(error))
        return None

    source = AwsSource(region=region, fips=fips, dualstack=dualstack, **source_keys)
    return Registry(host, account, source, aliases)


def _aliases(name, entry, problems) -> tuple[str, ...]:
    aliases = _get(entry, name, "aliases", list, [], problems)
    result = []
    for alias in aliases:
        if not isinstance(alias, str) or not _ALIAS.match(alias.lower()):
            problems.add(
                f"{name}.aliases",
                f"holds {alias!r}, but each alias must be a host name with an optional port",
            )
            continue
        result.append(alias.lower())
    return tuple(result)


def _docker(table, problems) -> DockerSettings:
    default = DockerSettings()
    files = _get(
        table, "docker", "config_files", list, list(map(str, default.config_files)), problems
    )
    config_files = []
    for item in files:
        if not isinstance(item, str) or not item.startswith("/"):
            problems.add(
                "docker.config_files", f"holds {item!r}, but each must be an absolute path"
            )
            continue
        config_files.append(Path(item))

    users = _get(table, "docker", "users", list, [], problems)
    for user in users:
        if not isinstance(user, str) or not _USER_NAME.match(user):
            problems.add("docker.users", f"holds {user!r}, but each must be a user name")
    host = _get(table, "docker", "host", str, default.host, problems)
    if not host.startswith(_DOCKER_SCHEMES):
        problems.add(
            "docker.host",
            f"is {host!r}, but must start with one of {', '.join(_DOCKER_SCHEMES)}",
        )

    return DockerSettings(
        config_files=tuple(config_files),
        users=tuple(user for user in users if isinstance(user, str)),
        host=host,
        verify_login=_get(table, "docker", "verify_login", bool, default.verify_login, problems),
        swarm_services=_get(
            table, "docker", "swarm_services", bool, default.swarm_services, problems
        ),
    )


def _rancher(table, problems, environ, secrets) -> RancherSettings | None:
    values = {
        key: _get(table, "rancher", key, str, "", problems)
        for key in _TABLE_KEYS["rancher"]
        if key != "create_missing"
    }
    create_missing = _get(table, "rancher", "create_missing", bool, False, problems)
    url = values["url"]
    if not url:
        return None

    problem = _rancher_url_problem(url)
    if problem:
        problems.add("rancher.url", problem)
    secret = "" if secrets == "skip" else _rancher_secret(values, problems, environ, secrets)
    # A whole bearer token ("token-abcde:secret") as the secret carries its access key.
    secret_known = secrets == "read" or bool(secret)
    if not values["access_key"] and ":" not in secret and secret_known:
        problems.add(
            "rancher.access_key",
            "is missing; set the API access key, or put the whole bearer token "
            "(token-xxxxx:secret) in the secret key file",
        )
    if values["ca_file"] and not os.path.isfile(values["ca_file"]):
        problems.add("rancher.ca_file", f"is {values['ca_file']!r}, but no such file exists")

    return RancherSettings(
        url=url.rstrip("/"),
        access_key=values["access_key"],
        secret_key=secret,
        secret_key_file=values["secret_key_file"],
        ca_file=values["ca_file"],
        create_missing=create_missing,
    )


def url_problem(url: str, what: str = "URL") -> str | None:
    """Return why ``url`` is not an http(s) URL that botocore and requests accept, or None.

    The message continues the key name: "aws.endpoint_url: is 'x', but ...". A URL with
    a user name or password is rejected without quoting it.
    """
    expected = f"must be an http:// or https:// {what}"
    if not url.isascii() or any(char.isspace() or not char.isprintable() for char in url):
        return f"is {url!r}, but {expected} without spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not 0-65535
    except ValueError as error:
        return f"is {url!r}, but {expected}: {error}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"is {url!r}, but {expected}"
    if parts.username is not None or parts.password is not None:
        return f"contains a user name or password, but {expected} without them"
    if not (_HOST_NAME.match(parts.hostname) or _is_ipv6_address(parts.hostname)):
        return f"is {url!r}, but its host {parts.hostname!r} is not a valid host name"
    if port == 0:
        return f"is {url!r}, but port 0 cannot be connected to"
    return None


def _is_ipv6_address(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _rancher_url_problem(url) -> str | None:
    problem = url_problem(url, "URL of a Rancher project API")
    if problem:
        return problem
    try:
        from ecr_agent.rancher import validate_url
    except ImportError:  # pragma: no cover - the module ships with the package
        return None
    return validate_url(url)


def _rancher_secret(values, problems, environ, secrets) -> str:
    inline, file_name = values["secret_key"], values["secret_key_file"]
    if inline and file_name:
        problems.add("rancher.secret_key", "and rancher.secret_key_file are both set; keep one")
        return ""
    if inline:
        return inline
    if not file_name:
        problems.add("rancher.secret_key_file", "is missing; set it (or secret_key)")
        return ""

    path = _secret_path(file_name, environ)
    if path is None and secrets == "check":
        return ""
    if path is None:
        problems.add(
            "rancher.secret_key_file",
            f"is {file_name!r}, a systemd credential name, but CREDENTIALS_DIRECTORY is not "
            "set; use an absolute path or LoadCredential= in the unit",
        )
        return ""
    return _read_secret(path, problems)


def _secret_path(file_name, environ) -> Path | None:
    if "/" in file_name:
        return Path(file_name)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    return Path(directory) / file_name if directory else None


def _read_secret(path: Path, problems) -> str:
    key = "rancher.secret_key_file"
    try:
        mode = path.stat().st_mode
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        problems.add(key, f"is {str(path)!r}, but it cannot be read: {_os_reason(error)}")
        return ""
    if mode & stat.S_IROTH:
        problems.add(key, f"is {str(path)!r}, which is world-readable; run chmod o-r on it")
    if not secret:
        problems.add(key, f"is {str(path)!r}, which is empty")
    return secret
