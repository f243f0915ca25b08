"""Invalid configurations through the command line: exit 78, a message with key and fix.

Every case runs ``ecr-agent check-config`` and ``ecr-agent run``; both must exit 78
(EX_CONFIG) before writing anything, and stderr must name the key and give the fix.
A running agent sent SIGHUP with a bad file keeps renewing with the configuration it has.
"""

import concurrent.futures
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import agent_command, agent_env
from tests.faults.harness import (
    ACCOUNT,
    HOST,
    ONE_REGISTRY,
    OTHER_HOST,
    OTHER_REGISTRY,
    NotifyReceiver,
    wait_until,
)

EX_CONFIG = 78


@dataclass(frozen=True)
class Case:
    name: str
    text: str  # TOML; {dir} is the case's directory
    key: str  # the key the message must name
    fix: str  # the advice the message must give
    # A problem only the service can see: check-config, run outside it, reports and goes on.
    service_only: bool = False


def docker(files='["{dir}/docker/config.json"]', extra=""):
    return f"[docker]\nconfig_files = {files}\nverify_login = false\n{extra}"


AGENT = '[agent]\nstate_dir = "{dir}/state"\n'
VALID = AGENT + docker() + ONE_REGISTRY
RANCHER_URL = "http://127.0.0.1:9/v2-beta/projects/1a5"


def rancher(lines):
    return AGENT + docker() + ONE_REGISTRY + f'[rancher]\nurl = "{RANCHER_URL}"\n' + lines


def renewal(lines):
    return AGENT + "[renewal]\n" + lines + "\n" + docker() + ONE_REGISTRY


def aws(lines):
    return AGENT + "[aws]\n" + lines + "\n" + docker() + ONE_REGISTRY


def registry(lines):
    return AGENT + docker() + "[[registry]]\n" + lines + "\n"


CASES = [
    # [agent]
    Case(
        "state-dir-relative",
        '[agent]\nstate_dir = "var/lib"\n' + docker() + ONE_REGISTRY,
        "agent.state_dir",
        "absolute path",
    ),
    Case(
        "state-dir-number",
        "[agent]\nstate_dir = 5\n" + docker() + ONE_REGISTRY,
        "agent.state_dir",
        "must be a string",
    ),
    Case(
        "log-level-unknown",
        AGENT + 'log_level = "loud"\n' + docker() + ONE_REGISTRY,
        "agent.log_level",
        "debug, info, warning, error",
    ),
    Case(
        "log-level-upper-case",
        AGENT + 'log_level = "DEBUG"\n' + docker() + ONE_REGISTRY,
        "agent.log_level",
        "debug, info, warning, error",
    ),
    Case(
        "agent-unknown-key",
        AGENT + 'colour = "red"\n' + docker() + ONE_REGISTRY,
        "agent.colour",
        "unknown key; expected one of log_level, state_dir",
    ),
    Case(
        "agent-not-a-table",
        "agent = 5\n" + docker() + ONE_REGISTRY,
        "agent",
        "must be a table ([agent])",
    ),
    Case(
        "unknown-table",
        VALID + "[proxy]\nurl = 'x'\n",
        "proxy",
        "unknown table or key; expected one of",
    ),
    # [renewal]
    Case(
        "duration-words",
        renewal('min_interval = "5 minutes"'),
        "renewal.min_interval",
        'a unit (ms, s, m, h, d), such as "90s"',
    ),
    Case(
        "duration-negative-text",
        renewal('retry_initial = "-5s"'),
        "renewal.retry_initial",
        'a unit (ms, s, m, h, d), such as "90s"',
    ),
    Case(
        "duration-padded",
        renewal('jitter = " 90s "'),
        "renewal.jitter",
        'a unit (ms, s, m, h, d), such as "90s"',
    ),
    Case("duration-zero", renewal("min_interval = 0"), "renewal.min_interval", "must be positive"),
    Case(
        "duration-negative-number",
        renewal("retry_initial = -1"),
        "renewal.retry_initial",
        "must be positive",
    ),
    Case(
        "duration-infinite",
        renewal("retry_max = inf"),
        "renewal.retry_max",
        "must be a finite number of seconds",
    ),
    Case(
        "duration-nan",
        renewal("jitter = nan"),
        "renewal.jitter",
        "must be a finite number of seconds",
    ),
    Case(
        "duration-too-long",
        renewal('min_interval = "1000d"'),
        "renewal.min_interval",
        'must be at most 365 days ("365d")',
    ),
    Case(
        "duration-huge-number",
        renewal("min_interval = 1e18"),
        "renewal.min_interval",
        'must be at most 365 days ("365d")',
    ),
    Case(
        "duration-boolean",
        renewal("jitter = true"),
        "renewal.jitter",
        'must be a duration such as "90s"',
    ),
    Case(
        "retry-max-below-initial",
        renewal('retry_initial = "1h"\nretry_max = "1m"'),
        "renewal.retry_max",
        "raise it or lower that",
    ),
    Case(
        "fraction-above-one",
        renewal("lifetime_fraction = 1.5"),
        "renewal.lifetime_fraction",
        "must be between 0 and 1",
    ),
    Case(
        "fraction-text",
        renewal('lifetime_fraction = "half"'),
        "renewal.lifetime_fraction",
        "must be a number",
    ),
    Case(
        "renewal-unknown-key",
        renewal('interval = "1h"'),
        "renewal.interval",
        "unknown key; expected one of jitter",
    ),
    # [aws]
    Case(
        "region-short",
        aws('region = "us-east"'),
        "aws.region",
        "must be a region name such as us-east-1",
    ),
    Case(
        "endpoint-ftp",
        aws('endpoint_url = "ftp://ecr.example"'),
        "aws.endpoint_url",
        "must be an http:// or https:// URL",
    ),
    Case(
        "endpoint-no-scheme",
        aws('endpoint_url = "localhost:5000"'),
        "aws.endpoint_url",
        "must be an http:// or https:// URL",
    ),
    Case(
        "endpoint-space",
        aws('endpoint_url = "http://ecr local:5000"'),
        "aws.endpoint_url",
        "must be an http:// or https:// URL without spaces or control characters",
    ),
    Case(
        "endpoint-port-out-of-range",
        aws('endpoint_url = "http://ecr.local:99999"'),
        "aws.endpoint_url",
        "must be an http:// or https:// URL: Port out of range 0-65535",
    ),
    Case(
        "endpoint-broken-ipv6",
        aws('endpoint_url = "http://[::1:5000"'),
        "aws.endpoint_url",
        "must be an http:// or https:// URL: Invalid IPv6 URL",
    ),
    Case(
        "endpoint-with-password",
        aws('endpoint_url = "https://user:STAND-IN-PASSWORD@ecr.local"'),
        "aws.endpoint_url",
        "contains a user name or password, but must be an http:// or https:// URL without them",
    ),
    Case(
        "sts-endpoint-no-scheme",
        aws('sts_endpoint_url = "sts.local"'),
        "aws.sts_endpoint_url",
        "must be an http:// or https:// URL",
    ),
    Case(
        "role-arn-short-account",
        aws('role_arn = "arn:aws:iam::123:role/pull"'),
        "aws.role_arn",
        "must be an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
    ),
    Case(
        "external-id-without-role",
        aws('external_id = "ext-1"'),
        "aws.external_id",
        "external_id needs a role",
    ),
    Case(
        "session-name-short",
        aws('role_session_name = "x"'),
        "aws.role_session_name",
        "2-64 characters",
    ),
    Case("profile-number", aws("profile = 5"), "aws.profile", "must be a string"),
    Case(
        "aws-secret-key-in-config",
        aws('secret_access_key = "STAND-IN"'),
        "aws.secret_access_key",
        "unknown key; expected one of endpoint_url",
    ),
    # [[registry]]
    Case("no-registry", AGENT + docker(), "registry", "add at least one registry"),
    Case(
        "registry-empty-array",
        "registry = []\n" + AGENT + docker(),
        "registry",
        "add at least one registry",
    ),
    Case(
        "registry-not-array",
        'registry = {account = "123456789012"}\n' + AGENT + docker(),
        "registry",
        "must be an array of tables ([[registry]])",
    ),
    Case(
        "account-short",
        registry('account = "12345"\nregion = "us-east-1"'),
        "registry[0].account",
        "must be 12 digits",
    ),
    Case(
        "account-number",
        registry('account = 123456789012\nregion = "us-east-1"'),
        "registry[0].account",
        "must be a quoted string of 12 digits",
    ),
    Case(
        "account-newline",
        registry('account = "123456789012\\n"\nregion = "us-east-1"'),
        "registry[0].account",
        "must be 12 digits",
    ),
    Case(
        "account-other-digits",
        registry('account = "' + "\u0661" * 12 + '"\nregion = "us-east-1"'),
        "registry[0].account",
        "must be 12 digits",
    ),
    Case(
        "region-unknown-form",
        registry(f'account = "{ACCOUNT}"\nregion = "mars"'),
        "registry[0].region",
        "must be a region name such as us-east-1",
    ),
    Case(
        "region-newline",
        registry(f'account = "{ACCOUNT}"\nregion = "us-east-1\\n"'),
        "registry[0].region",
        "must be a region name such as us-east-1",
    ),
    Case(
        "region-missing",
        AGENT + '[aws]\nregion = ""\n' + docker() + f'[[registry]]\naccount = "{ACCOUNT}"\n',
        "registry[0]",
        "missing region; set region here or in [aws]",
    ),
    Case(
        "account-missing",
        registry('region = "us-east-1"'),
        "registry[0]",
        'missing account; set account = "123456789012" or public = true',
    ),
    Case(
        "public-with-account",
        registry(f'public = true\naccount = "{ACCOUNT}"'),
        "registry[0].account",
        "a public registry takes no account",
    ),
    Case("public-text", registry('public = "yes"'), "registry[0].public", "must be true or false"),
    Case(
        "registry-repeated",
        VALID + ONE_REGISTRY,
        "registry[1]",
        f"repeats host {HOST} of registry[0]",
    ),
    Case(
        "aliases-text",
        registry(f'account = "{ACCOUNT}"\nregion = "us-east-1"\naliases = "c"'),
        "registry[0].aliases",
        "must be a list",
    ),
    Case(
        "alias-invalid",
        registry(f'account = "{ACCOUNT}"\nregion = "us-east-1"\naliases = ["cache host!"]'),
        "registry[0].aliases",
        "each alias must be a host name with an optional port",
    ),
    Case(
        "registry-unknown-key",
        registry(f'acount = "{ACCOUNT}"\nregion = "us-east-1"'),
        "registry[0].acount",
        "unknown key; expected one of account",
    ),
    Case(
        "dualstack-without-endpoint",
        registry(f'account = "{ACCOUNT}"\nregion = "eu-isoe-west-1"\ndualstack = true'),
        "registry[0]",
        "has no dual-stack ECR endpoint",
    ),
    # [docker]
    Case(
        "config-file-relative",
        AGENT + docker('["config.json"]') + ONE_REGISTRY,
        "docker.config_files",
        "each must be an absolute path",
    ),
    Case(
        "config-files-text",
        AGENT + docker('"/root/config.json"') + ONE_REGISTRY,
        "docker.config_files",
        "must be a list",
    ),
    Case(
        "user-invalid",
        AGENT + docker(extra='users = ["bad user"]\n') + ONE_REGISTRY,
        "docker.users",
        "each must be a user name",
    ),
    Case(
        "docker-host-scheme",
        AGENT + docker(extra='host = "npipe:////./pipe/docker"\n') + ONE_REGISTRY,
        "docker.host",
        "must start with one of unix://",
    ),
    Case(
        "verify-login-text",
        AGENT + '[docker]\nconfig_files = []\nverify_login = "no"\n' + ONE_REGISTRY,
        "docker.verify_login",
        "must be true or false",
    ),
    Case(
        "no-target",
        AGENT + docker("[]") + ONE_REGISTRY,
        "docker",
        "no target: set docker.config_files, docker.users, rancher.url",
    ),
    # [rancher]
    Case(
        "rancher-url-no-scheme",
        AGENT
        + docker()
        + ONE_REGISTRY
        + '[rancher]\nurl = "rancher.example/v3/projects/c-x:p-y"\n'
        + 'access_key = "a"\nsecret_key = "STAND-IN"\n',
        "rancher.url",
        "must be an http:// or https:// URL of a Rancher project API",
    ),
    Case(
        "rancher-url-space",
        AGENT
        + docker()
        + ONE_REGISTRY
        + '[rancher]\nurl = "https://rancher example/v3/projects/c-x:p-y"\n'
        + 'access_key = "a"\nsecret_key = "STAND-IN"\n',
        "rancher.url",
        "must be an http:// or https:// URL of a Rancher project API without spaces",
    ),
    Case(
        "rancher-access-key-missing",
        rancher('secret_key = "STAND-IN"\n'),
        "rancher.access_key",
        "set the API access key",
    ),
    Case(
        "rancher-both-secrets",
        rancher('access_key = "a"\nsecret_key = "x"\nsecret_key_file = "{dir}/secret"\n'),
        "rancher.secret_key",
        "keep one",
    ),
    Case(
        "secret-file-missing",
        rancher('access_key = "a"\nsecret_key_file = "{dir}/absent"\n'),
        "rancher.secret_key_file",
        "cannot be read: No such file or directory",
    ),
    Case(
        "secret-file-directory",
        rancher('access_key = "a"\nsecret_key_file = "{dir}"\n'),
        "rancher.secret_key_file",
        "cannot be read: Is a directory",
    ),
    Case(
        "secret-file-world-readable",
        rancher('access_key = "a"\nsecret_key_file = "{dir}/world-readable"\n'),
        "rancher.secret_key_file",
        "world-readable; run chmod o-r on it",
    ),
    Case(
        "secret-file-empty",
        rancher('access_key = "a"\nsecret_key_file = "{dir}/empty"\n'),
        "rancher.secret_key_file",
        "which is empty",
    ),
    Case(
        "secret-credential-without-directory",
        rancher('access_key = "a"\nsecret_key_file = "rancher-secret"\n'),
        "rancher.secret_key_file",
        "CREDENTIALS_DIRECTORY is not set; use an absolute path",
        service_only=True,
    ),
    Case(
        "ca-file-missing",
        rancher('access_key = "a"\nsecret_key = "STAND-IN"\nca_file = "{dir}/absent.pem"\n'),
        "rancher.ca_file",
        "no such file exists",
    ),
    # TOML syntax
    Case(
        "toml-open-table",
        "[agent\n" + docker() + ONE_REGISTRY,
        "invalid TOML",
        "(at line 1, column 7)",
    ),
    Case(
        "toml-unterminated-string",
        AGENT + 'log_level = "info\n' + docker() + ONE_REGISTRY,
        "invalid TOML",
        "(at line 3, column 18)",
    ),
    Case(
        "toml-repeated-key",
        AGENT + 'log_level = "info"\nlog_level = "debug"\n' + docker() + ONE_REGISTRY,
        "invalid TOML",
        "(at line 4, column 20)",
    ),
    Case("toml-repeated-table", VALID + AGENT, "invalid TOML", "(at line"),
]
FILE_CASES = ["config-missing", "config-directory", "config-not-utf8"]


def prepare(case_dir: Path) -> None:
    case_dir.mkdir(parents=True, exist_ok=True)
    (case_dir / "secret").write_text("STAND-IN-RANCHER-SECRET\n")
    (case_dir / "secret").chmod(0o600)
    (case_dir / "world-readable").write_text("STAND-IN-RANCHER-SECRET\n")
    (case_dir / "world-readable").chmod(0o644)
    (case_dir / "empty").write_text("\n")
    (case_dir / "empty").chmod(0o600)


def config_path(name: str, case_dir: Path) -> Path:
    path = case_dir / "ecr-agent.toml"
    case = next((case for case in CASES if case.name == name), None)
    if case is not None:
        path.write_text(case.text.replace("{dir}", str(case_dir)))
    elif name == "config-missing":
        path = case_dir / "absent.toml"
    elif name == "config-directory":
        path = case_dir
    elif name == "config-not-utf8":
        path.write_bytes(b'[agent]\nlog_level = "\xff"\n')
    return path


def run_cli(path: Path, case_dir: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        agent_command("--config", str(path), *args),
        env=agent_env(case_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run check-config and run for every case, a few processes at a time."""
    base = tmp_path_factory.mktemp("configs")
    names = [case.name for case in CASES] + FILE_CASES

    def run_case(name):
        case_dir = base / name
        prepare(case_dir)
        path = config_path(name, case_dir)
        return {
            "check-config": run_cli(path, case_dir, "check-config"),
            "run": run_cli(path, case_dir, "run"),
            "dir": case_dir,
        }

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(zip(names, pool.map(run_case, names), strict=True))


def test_table_is_large_enough():
    assert len(CASES) + len(FILE_CASES) >= 40


def test_valid_base_config_accepted(tmp_path):
    prepare(tmp_path)
    path = tmp_path / "ecr-agent.toml"
    path.write_text(VALID.replace("{dir}", str(tmp_path)))
    result = run_cli(path, tmp_path, "check-config")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_invalid_config_exits_78(results, case, command):
    result = results[case.name][command]
    if case.service_only and command == "check-config":
        assert result.returncode == 0, result.stderr
        assert "only the service can read it" in result.stdout
        return
    assert result.returncode == EX_CONFIG, result.stderr
    assert "STAND-IN-PASSWORD" not in result.stderr
    assert f"invalid configuration {results[case.name]['dir']}" in result.stderr
    assert f"  {case.key}" in result.stderr
    assert case.fix in result.stderr


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_invalid_config_writes_nothing(results, case):
    case_dir = results[case.name]["dir"]
    assert not (case_dir / "docker").exists()
    assert not (case_dir / "state").exists()


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("name", FILE_CASES)
def test_unreadable_config_exits_78(results, name, command):
    result = results[name][command]
    reasons = {
        "config-missing": "cannot read the file: No such file or directory",
        "config-directory": "cannot read the file: Is a directory",
        "config-not-utf8": "cannot read the file: 'utf-8' codec can't decode byte 0xff",
    }
    assert result.returncode == EX_CONFIG, result.stderr
    assert reasons[name] in result.stderr


RELOAD_SAMPLE = [
    "toml-open-table",
    "duration-words",
    "duration-infinite",
    "agent-unknown-key",
    "no-registry",
    "account-newline",
    "secret-file-world-readable",
    "no-target",
]


def test_sighup_with_bad_config_keeps_old_one(agent, proxy, tmp_path):
    """After each rejected reload the agent still renews the registries it had."""
    receiver = NotifyReceiver(tmp_path / "notify.sock")
    agent.write(ONE_REGISTRY + OTHER_REGISTRY)
    running = agent.start("run", env={"NOTIFY_SOCKET": receiver.path})
    try:
        running.wait_started()
        assert wait_until(lambda: agent.password_of() is not None)
        prepare(tmp_path)

        for rejected, name in enumerate(RELOAD_SAMPLE, start=1):
            config_path(name, tmp_path)
            assert agent.config.read_text() != ""
            running.signal(signal.SIGHUP)
            assert wait_until(lambda n=rejected: running.log().count("reload rejected") >= n)
            assert running.log().count("reload rejected") == rejected

            calls, before = proxy.token_calls(), agent.password_of()
            running.signal(signal.SIGUSR1)
            assert wait_until(lambda c=calls: proxy.token_calls() == c + 1)
            assert wait_until(lambda b=before: agent.password_of() not in (None, b))
            assert wait_until(lambda: agent.password_of(OTHER_HOST) == proxy.last_password())
            assert not running.exited()

        assert running.stop() == 0
    finally:
        receiver.close()

    log = running.log()
    assert log.count("<3>reload rejected, keeping the running configuration") == len(RELOAD_SAMPLE)
    assert "renewal.min_interval: is '5 minutes'" in log
    assert "registry[0].account: is '123456789012\\n', but must be 12 digits" in log
    assert set(agent.docker_document()["auths"]) == {
        HOST,
        "210987654321.dkr.ecr.us-east-1.amazonaws.com",
    }
    statuses = [text for _, text in receiver.messages if "STATUS=" in text and "READY=1" in text]
    assert sum("reload rejected" in text for text in statuses) == len(RELOAD_SAMPLE)
