import os
import textwrap
from pathlib import Path

import pytest

from ecr_agent.config import load_config, parse_duration
from ecr_agent.errors import ConfigError

MINIMAL = """
[agent]
state_dir = "/var/lib/ecr-agent"
[[registry]]
account = "123456789012"
region = "us-west-2"
"""


def write(tmp_path, text, name="ecr-agent.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text, environ=None):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=environ or {})
    return "\n".join(caught.value.problems)


def test_minimal_config_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), environ={})
    registry = config.registries[0]
    assert registry.host == "123456789012.dkr.ecr.us-west-2.amazonaws.com"
    assert config.renewal.min_interval == 300
    assert config.renewal.jitter == 120
    assert config.docker.verify_login is True
    assert config.rancher is None


SHIPPED = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ecr-agent.toml"
)


def test_shipped_config_asks_for_a_registry():
    with pytest.raises(ConfigError) as caught:
        load_config(SHIPPED, environ={})
    assert caught.value.problems == ["registry: no [[registry]] table; add at least one registry"]


def test_shipped_config_valid_with_examples(tmp_path):
    lines = Path(SHIPPED).read_text().splitlines()
    examples = [
        line[2:]
        for line in lines
        if line.startswith(("# [[registry]]", "# account", "# region", "# public"))
    ]
    text = "\n".join([*lines, "", *examples]) + "\n"
    config = load_config(write(tmp_path, text), environ={})
    hosts = [registry.host for registry in config.registries]
    assert hosts == ["123456789012.dkr.ecr.us-west-2.amazonaws.com", "public.ecr.aws"]


def test_aws_defaults_inherited(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
            [aws]
            region = "eu-central-1"
            profile = "ops"
            role_arn = "arn:aws:iam::123456789012:role/ecr-pull"
            external_id = "ext-1"
            [[registry]]
            account = "123456789012"
            [[registry]]
            account = "210987654321"
            region = "us-east-1"
            profile = "other"
            """,
        ),
        environ={},
    )
    first, second = config.registries
    assert first.source.region == "eu-central-1"
    assert first.source.role_arn.endswith("role/ecr-pull")
    assert first.source.external_id == "ext-1"
    assert second.source.profile == "other"
    assert second.source.region == "us-east-1"


def test_public_registry(tmp_path):
    config = load_config(write(tmp_path, "[[registry]]\npublic = true\n"), environ={})
    assert config.registries[0].host == "public.ecr.aws"
    assert config.registries[0].source.region == "us-east-1"


def test_fips_and_dualstack_hosts(tmp_path):
    text = """
    [[registry]]
    account = "123456789012"
    region = "us-east-1"
    fips = true
    [[registry]]
    account = "123456789012"
    region = "eu-west-1"
    dualstack = true
    """
    config = load_config(write(tmp_path, text), environ={})
    assert config.registries[0].host == "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"
    assert config.registries[1].host == "123456789012.dkr-ecr.eu-west-1.on.aws"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("6h", 21600),
        ("1d", 86400),
        ("1h30m", 5400),
        (45, 45),
        ("500ms", 0.5),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "5", "5x", "m5", "1.5.5s", True, [], "5 m"])
def test_parse_duration_rejects(value):
    with pytest.raises(ValueError):
        parse_duration(value)


ONE_REGISTRY = "[[registry]]\naccount = '123456789012'\nregion = 'us-east-1'\n"

INVALID = [
    ("[agent]\nlog_level = 'loud'\n" + MINIMAL.replace("[agent]", "[x_agent]"), "agent.log_level"),
    ("[renewal]\nmin_interval = '5 minutes'\n" + MINIMAL, "renewal.min_interval"),
    ("[renewal]\nlifetime_fraction = 1.5\n" + MINIMAL, "renewal.lifetime_fraction"),
    ("[renewal]\nlifetime_fraction = 0\n" + MINIMAL, "renewal.lifetime_fraction"),
    (
        "[renewal]\nretry_initial = 0\n" + MINIMAL,
        "renewal.retry_initial: is 0, but must be positive",
    ),
    ("[renewal]\nretry_initial = '1h'\nretry_max = '1m'\n" + MINIMAL, "renewal.retry_max"),
    ("[renewal]\nextra = 1\n" + MINIMAL, "renewal.extra: unknown key"),
    ("[nonsense]\n" + MINIMAL, "nonsense: unknown table"),
    (
        "[agent]\nstate_dir = 5\n[[registry]]\npublic = true\n",
        "agent.state_dir: is 5, but must be a string",
    ),
    ("[[registry]]\naccount = '12345'\nregion = 'us-east-1'\n", "registry[0].account"),
    ("[[registry]]\naccount = 123456789012\nregion = 'us-east-1'\n", "registry[0].account"),
    ("[[registry]]\naccount = '123456789012'\nregion = 'mars'\n", "registry[0].region"),
    ("[aws]\nregion = ''\n[[registry]]\naccount = '123456789012'\n", "missing region"),
    ("[[registry]]\nregion = 'us-east-1'\n", "missing account"),
    ("[[registry]]\npublic = true\naccount = '123456789012'\n", "registry[0].account: is set"),
    ("[[registry]]\npublic = 'yes'\n", "registry[0].public"),
    ("[agent]\nlog_level = 'info'\n", "no [[registry]]"),
    ("registry = []\n", "no [[registry]]"),
    ("[aws]\nendpoint_url = 'localhost:5000'\n" + MINIMAL, "aws.endpoint_url"),
    ("[aws]\nrole_arn = 'ecr-role'\n" + MINIMAL, "aws.role_arn"),
    ("[aws]\nexternal_id = 'x'\n" + MINIMAL, "aws.external_id"),
    ("[aws]\nrole_session_name = 'a b'\n" + MINIMAL, "aws.role_session_name"),
    ("[docker]\nconfig_files = ['relative/config.json']\n" + MINIMAL, "docker.config_files"),
    ("[docker]\nconfig_files = '/root/.docker/config.json'\n" + MINIMAL, "docker.config_files"),
    ("[docker]\nusers = ['bad user']\n" + MINIMAL, "docker.users"),
    ("[docker]\nhost = '/var/run/docker.sock'\n" + MINIMAL, "docker.host"),
    ("[docker]\nverify_login = 'yes'\n" + MINIMAL, "docker.verify_login"),
    (
        "[docker]\nconfig_files = []\nverify_login = false\n" + MINIMAL,
        "docker: no target",
    ),
    (
        "[rancher]\nurl = 'ftp://rancher'\naccess_key = 'a'\nsecret_key = 's'\n" + MINIMAL,
        "rancher.url",
    ),
    (
        "[rancher]\nurl = 'https://rancher.example/v3/projects/c-1:p-1'\nsecret_key = 's'\n"
        + MINIMAL,
        "rancher.access_key",
    ),
    (
        "[rancher]\nurl = 'https://rancher.example/v3/projects/c-1:p-1'\naccess_key = 'a'\n"
        + MINIMAL,
        "rancher.secret_key_file",
    ),
    (
        ONE_REGISTRY + ONE_REGISTRY,
        "repeats host",
    ),
    (
        "[[registry]]\naccount = '123456789012'\nregion = 'us-east-1'\naliases = ['bad host!']\n",
        "registry[0].aliases",
    ),
    (
        "[[registry]]\naccount = '123456789012'\nregion = 'us-east-1'\nhost = 'x'\n",
        "registry[0].host: unknown key",
    ),
    (
        "[[registry]]\naccount = '123456789012'\nregion = 'us-iso-east-1'\ndualstack = true\n",
        "no dual-stack",
    ),
    ("[agent\n", "invalid TOML"),
    ("[[registry]]\naccount = '123456789012'\naccount = '123456789012'\n", "invalid TOML"),
]


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_config_names_key(tmp_path, text, expected):
    assert expected in problems(tmp_path, text)


def test_problem_has_line_number(tmp_path):
    text = "[agent]\nlog_level = 'info'\n\n[[registry]]\naccount = '12'\nregion = 'us-east-1'\n"
    assert "registry[0].account: is '12', but must be 12 digits (line 5)" in problems(
        tmp_path, text
    )


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.toml", environ={})


RANCHER = """
[rancher]
url = "https://rancher.example/v2-beta/projects/1a5"
access_key = "AK-STANDIN"
secret_key_file = "{secret}"
"""


def test_rancher_secret_file_read(tmp_path):
    secret = tmp_path / "rancher-secret"
    secret.write_text("STAND-IN-RANCHER-SECRET\n")
    secret.chmod(0o600)
    config = load_config(write(tmp_path, RANCHER.format(secret=secret) + MINIMAL), environ={})
    assert config.rancher.secret_key == "STAND-IN-RANCHER-SECRET"
    assert "STAND-IN-RANCHER-SECRET" not in repr(config)


def test_rancher_secret_world_readable(tmp_path):
    secret = tmp_path / "rancher-secret"
    secret.write_text("STAND-IN-RANCHER-SECRET\n")
    secret.chmod(0o644)
    found = problems(tmp_path, RANCHER.format(secret=secret) + MINIMAL)
    assert "world-readable" in found
    assert "STAND-IN-RANCHER-SECRET" not in found


def test_rancher_secret_missing_file(tmp_path):
    found = problems(tmp_path, RANCHER.format(secret=tmp_path / "absent") + MINIMAL)
    assert "cannot be read" in found


def test_rancher_secret_systemd_credential(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "rancher-secret").write_text("STAND-IN-RANCHER-SECRET")
    (credentials / "rancher-secret").chmod(0o400)
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    path = write(tmp_path, RANCHER.format(secret="rancher-secret") + MINIMAL)
    assert load_config(path, environ=environ).rancher.secret_key == "STAND-IN-RANCHER-SECRET"


def test_rancher_credential_without_directory(tmp_path):
    found = problems(tmp_path, RANCHER.format(secret="rancher-secret") + MINIMAL)
    assert "CREDENTIALS_DIRECTORY" in found


def test_rancher_bearer_token_without_access_key(tmp_path):
    secret = tmp_path / "rancher-token"
    secret.write_text("token-abcde:STAND-IN-RANCHER-SECRET\n")
    secret.chmod(0o600)
    text = RANCHER.format(secret=secret).replace('access_key = "AK-STANDIN"', "") + MINIMAL
    config = load_config(write(tmp_path, text), environ={})
    assert config.rancher.access_key == ""
    assert config.rancher.secret_key == "token-abcde:STAND-IN-RANCHER-SECRET"


def test_region_defaults_to_us_east_1(tmp_path):
    config = load_config(write(tmp_path, "[[registry]]\naccount = '123456789012'\n"), environ={})
    assert config.registries[0].host == "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize("key", ["min_interval", "retry_max"])
def test_duration_longer_than_token_rejected(tmp_path, key):
    found = problems(tmp_path, f"[renewal]\n{key} = '13h'\n" + MINIMAL)
    assert f"renewal.{key}: is 46800 s, but must be at most 12h" in found


def test_state_dir_that_is_a_file(tmp_path):
    (tmp_path / "state-file").write_text("")
    text = MINIMAL.replace("/var/lib/ecr-agent", str(tmp_path / "state-file"))
    assert "which is not a directory" in problems(tmp_path, text)


def test_integer_account_gives_one_problem(tmp_path):
    found = problems(tmp_path, "[[registry]]\naccount = 123456789012\n")
    assert found == (
        "registry[0].account: is 123456789012, but must be a quoted string of 12 digits (line 2)"
    )


def test_alias_equal_to_own_host(tmp_path):
    text = MINIMAL + 'aliases = ["123456789012.dkr.ecr.us-west-2.amazonaws.com"]\n'
    found = problems(tmp_path, text)
    assert "registry[0].aliases: lists the registry's own host" in found
    assert "repeats host" not in found


def test_boolean_shown_as_toml(tmp_path):
    assert "is true, but must be a string" in problems(tmp_path, "[agent]\nlog_level = true\n")


def test_rancher_credential_name_accepted_by_check(tmp_path):
    path = write(tmp_path, RANCHER.format(secret="rancher-secret") + MINIMAL)
    config = load_config(path, environ={}, secrets="check")
    assert config.rancher.secret_key == ""
    assert config.rancher.secret_key_file == "rancher-secret"


def test_rancher_secret_skipped_for_status(tmp_path):
    path = write(tmp_path, RANCHER.format(secret=tmp_path / "absent") + MINIMAL)
    assert load_config(path, environ={}, secrets="skip").rancher.secret_key == ""
