"""The unit file on its own: required settings and systemd-analyze's offline checks."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

UNIT_FILE = Path(__file__).resolve().parents[2] / "systemd" / "ecr-agent.service"
MAX_EXPOSURE = 2.5


def unit_settings(path=UNIT_FILE):
    """Return {(section, key): [values]} of a unit file. Repeated keys keep every value."""
    settings = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


def require_systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (Debian package systemd)")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", ["notify"]),
        ("NotifyAccess", ["main"]),
        ("ExecStart", ["/usr/bin/ecr-agent run"]),
        ("ExecReload", ["/bin/kill -HUP $MAINPID"]),
        ("WatchdogSec", ["60s"]),
        ("Restart", ["on-failure"]),
        ("RestartPreventExitStatus", ["78"]),
        ("EnvironmentFile", ["-/etc/default/ecr-agent", "-/etc/sysconfig/ecr-agent"]),
        ("StateDirectory", ["ecr-agent"]),
        ("StateDirectoryMode", ["0700"]),
        ("ProtectSystem", ["strict"]),
        ("LimitCORE", ["0"]),
    ],
)
def test_unit_setting(key, expected):
    assert unit_settings().get(("Service", key)) == expected


@pytest.mark.parametrize("key", ["RestartSec", "TimeoutStartSec", "TimeoutStopSec"])
def test_unit_sets_timing(key):
    assert ("Service", key) in unit_settings()


def test_unit_documents_rancher_credential():
    text = UNIT_FILE.read_text()

    assert "LoadCredential=rancher-secret:" in text
    assert 'secret_key_file = "rancher-secret"' in text


def test_unit_keeps_docker_paths_writable():
    writable = " ".join(unit_settings()[("Service", "ReadWritePaths")]).split()

    assert "-/root/.docker" in writable
    assert "/home" in writable


def test_unit_installs_into_multi_user():
    assert unit_settings()[("Install", "WantedBy")] == ["multi-user.target"]


def test_exposure_score(measurements):
    require_systemd_analyze()
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)

    assert match, result.stdout + result.stderr
    score = float(match.group(1))
    measurements["systemd-analyze security --offline=true exposure"] = f"{score}"
    assert score <= MAX_EXPOSURE


def test_exposure_threshold_exit_status():
    require_systemd_analyze()
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(UNIT_FILE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
