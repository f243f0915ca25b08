"""Fixtures for the system tests: ecr-agent installed in a container that boots systemd.

Run as root: ``python -m pytest -m system tests/system``. One container serves the whole
session. It installs $ECR_AGENT_DEB or the newest dist/ecr-agent_*.deb with dpkg, and
without one it installs the unit and a venv on Debian's python3 packages. ``agent``
resets the unit, its drop-ins, its files and the journal position before each test.
moto (from $ECR_AGENT_MOTO_PYTHON, else this interpreter) serves ECR behind a proxy that
can hang, and a Docker API stand-in listens on /run/docker.sock, all inside the
container's own network namespace. ECR_AGENT_SYSTEM_CONSOLE=1 prints the container's
console at the end.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from systemd_container import ContainerError, SystemdContainer, require_host_support

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

UNIT = "ecr-agent.service"
GUEST_SHARE = "/srv/ecr-agent-test"
CONFIG_PATH = "/etc/ecr-agent/ecr-agent.toml"
ENVIRONMENT_FILE = "/etc/default/ecr-agent"
DROP_IN_DIR = f"/etc/systemd/system/{UNIT}.d"
STATE_DIR = "/var/lib/ecr-agent"
TEST_USER = "ecrdev"

MOTO_PORT = 5000
PROXY_PORT = 5001
ENDPOINT_URL = f"http://127.0.0.1:{PROXY_PORT}"
ACCOUNT = "123456789012"
REGION = "us-east-1"
DOCKER_REQUEST_LOG = f"{GUEST_SHARE}/docker-requests.log"
HANG_FILE_NAME = "hang"

# Stand-in secrets. The test at the end of test_systemd_service.py asserts that none of
# them, and none of the registry passwords moto hands out, is in the journal.
AWS_ACCESS_KEY_ID = "AKIASTANDINSYSTEM001"
AWS_SECRET_ACCESS_KEY = "STAND-IN-SECRET-aws-key-for-system-tests"
RANCHER_SECRET_KEY = "STAND-IN-SECRET-rancher-key-for-system-tests"

# Values measured during the run, printed in the terminal summary.
MEASUREMENTS: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter):
    if not MEASUREMENTS:
        return
    terminalreporter.section("ecr-agent system measurements")
    for name, value in MEASUREMENTS.items():
        terminalreporter.write_line(f"{name}: {value}")


def moto_python():
    return os.environ.get("ECR_AGENT_MOTO_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def measurements():
    return MEASUREMENTS


@pytest.fixture(scope="session")
def host_support():
    reason = require_host_support()
    if reason:
        pytest.skip(f"system tests: {reason}")
    probe = subprocess.run([moto_python(), "-c", "import moto.server"], check=False)
    if probe.returncode != 0:
        pytest.skip(
            f"system tests: needs moto[server] for {moto_python()} (set ECR_AGENT_MOTO_PYTHON)"
        )


@pytest.fixture(scope="session")
def container(host_support):
    work = Path(tempfile.mkdtemp(prefix="ecr-agent-system-"))
    box = SystemdContainer(work / "base", work / "share", GUEST_SHARE, keep_units=(UNIT,))
    try:
        box.start()
        MEASUREMENTS["container boot (systemd is-system-running)"] = (
            f"{box.boot_seconds:.2f} s, state {box.boot_state}"
        )
        yield box
    finally:
        box.stop()
        console = box.console_text()
        shutil.rmtree(work, ignore_errors=True)
        if os.environ.get("ECR_AGENT_SYSTEM_CONSOLE"):
            print(console)


# -- installation ------------------------------------------------------------------------


def find_deb():
    """Return the .deb to install: $ECR_AGENT_DEB, else the newest dist/*.deb, or None."""
    explicit = os.environ.get("ECR_AGENT_DEB")
    if explicit:
        return Path(explicit)
    debs = sorted((ROOT / "dist").glob("ecr-agent_*.deb"), key=lambda path: path.stat().st_mtime)
    return debs[-1] if debs else None


def copy_source(destination):
    """Copy what a build of the project reads, leaving the working tree untouched."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    shutil.copy2(ROOT / "pyproject.toml", destination)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "ecr_agent", destination / "ecr_agent", ignore=ignore)
    readme = ROOT / "README.md"
    if readme.exists():
        shutil.copy2(readme, destination)
    else:
        (destination / "README.md").write_text("ecr-agent\n")


def purge_host_package(box):
    """Remove an ecr-agent package that shows through from the host's file system."""
    status = box.run("dpkg-query", "-W", "-f=${Status}", "ecr-agent", check=False).stdout
    if "installed" in status:
        box.run("dpkg", "--purge", "ecr-agent")


def install_deb(box, deb):
    shutil.copy2(deb, box.share_dir / deb.name)
    box.run("dpkg", "-i", f"{GUEST_SHARE}/{deb.name}", env={"DEBIAN_FRONTEND": "noninteractive"})
    return f"dpkg -i {deb.name}"


def install_venv(box):
    """Install the unit and a venv on Debian's python3 with its python3-* packages."""
    modules = "venv, ensurepip, setuptools, wheel, boto3, docker, sdnotify"
    probe = subprocess.run(
        ["/usr/bin/python3", "-c", f"import {modules}"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(
            "system tests: no dist/*.deb, and /usr/bin/python3 lacks one of the Debian "
            "packages python3-venv, python3-setuptools, python3-wheel, python3-boto3, "
            "python3-docker, python3-sdnotify"
        )

    copy_source(box.share_dir / "src")
    box.run("/usr/bin/python3", "-m", "venv", "--system-site-packages", "/opt/ecr-agent")
    # Offline: the build uses Debian's setuptools and wheel, the runtime Debian's packages.
    box.run(
        "/opt/ecr-agent/bin/pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--no-deps",
        "--no-build-isolation",
        f"{GUEST_SHARE}/src",
    )
    box.run("ln", "-sf", "/opt/ecr-agent/bin/ecr-agent", "/usr/bin/ecr-agent")

    for unit in sorted((ROOT / "systemd").iterdir()):
        if unit.is_file():
            box.write_file(f"/lib/systemd/system/{unit.name}", unit.read_text())
    box.run("systemctl", "daemon-reload")
    return "venv /opt/ecr-agent on Debian's python3 and python3-* packages"


class Installation:
    def __init__(self, method, enabled_after_install, active_after_install):
        self.method = method
        self.from_deb = method.startswith("dpkg")
        self.enabled_after_install = enabled_after_install
        self.active_after_install = active_after_install


@pytest.fixture(scope="session")
def installed(container):
    purge_host_package(container)
    deb = find_deb()
    method = install_deb(container, deb) if deb else install_venv(container)
    MEASUREMENTS["installed with"] = method

    enabled = container.run("systemctl", "is-enabled", UNIT, check=False).stdout.strip()
    active = container.run("systemctl", "is-active", UNIT, check=False).stdout.strip()
    container.run("useradd", "--create-home", TEST_USER)
    return Installation(method, enabled, active)


@pytest.fixture(scope="session")
def test_services(container, installed):
    """Start moto, the hanging proxy and the Docker API stand-in as transient units."""
    shutil.copy2(HERE / "fake_services.py", container.share_dir / "fake_services.py")
    python = os.path.realpath(moto_python())
    if container.run("test", "-x", python, check=False).returncode != 0:
        pytest.skip(f"system tests: {python} is not visible inside the container")

    container.run(
        "systemd-run",
        "--unit=ecr-test-moto",
        "--property=Type=exec",
        "--setenv=AWS_EC2_METADATA_DISABLED=true",
        python,
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        str(MOTO_PORT),
    )
    container.run(
        "systemd-run",
        "--unit=ecr-test-fakes",
        "--property=Type=exec",
        "/usr/bin/python3",
        f"{GUEST_SHARE}/fake_services.py",
        f"--listen=127.0.0.1:{PROXY_PORT}",
        f"--upstream-port={MOTO_PORT}",
        f"--hang-file={GUEST_SHARE}/{HANG_FILE_NAME}",
        "--docker-socket=/run/docker.sock",
        f"--docker-log={DOCKER_REQUEST_LOG}",
    )
    wait_for_moto(container)
    return container


def wait_for_moto(box, timeout=60):
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('{ENDPOINT_URL}/moto-api/data.json', timeout=2)"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if box.run("/usr/bin/python3", "-c", probe, check=False).returncode == 0:
            return
        time.sleep(0.2)
    journal = box.run("journalctl", "-u", "ecr-test-moto", "-u", "ecr-test-fakes", check=False)
    raise ContainerError(f"moto did not answer through the proxy:\n{journal.stdout}")


# -- the agent under test ------------------------------------------------------------------


def config_toml(
    accounts=(ACCOUNT,),
    endpoint_url=ENDPOINT_URL,
    log_level="info",
    verify_login=True,
    extra="",
):
    registries = "".join(f'[[registry]]\naccount = "{account}"\n\n' for account in accounts)
    return (
        f'[agent]\nstate_dir = "{STATE_DIR}"\nlog_level = "{log_level}"\n\n'
        '[renewal]\nretry_initial = "2s"\nretry_max = "10s"\n\n'
        f'[aws]\nregion = "{REGION}"\nendpoint_url = "{endpoint_url}"\n\n'
        f"{registries}"
        '[docker]\nconfig_files = ["/root/.docker/config.json"]\n'
        f'users = ["{TEST_USER}"]\nhost = "unix:///var/run/docker.sock"\n'
        f"verify_login = {'true' if verify_login else 'false'}\n\n"
        f"{extra}"
    )


def environment_file():
    return (
        f"AWS_ACCESS_KEY_ID={AWS_ACCESS_KEY_ID}\n"
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET_ACCESS_KEY}\n"
        "AWS_EC2_METADATA_DISABLED=true\n"
    )


def registry_host(account=ACCOUNT, region=REGION):
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


class AgentService:
    """The ecr-agent unit inside the container, with helpers to drive and observe it."""

    def __init__(self, box):
        self.box = box
        self.since = None

    # systemctl and properties

    def systemctl(self, *args, check=True, timeout=300):
        return self.box.run("systemctl", "--no-pager", *args, check=check, timeout=timeout)

    def show(self, *properties):
        output = self.systemctl("show", UNIT, *(f"--property={name}" for name in properties))
        values = {}
        for line in output.stdout.splitlines():
            name, _, value = line.partition("=")
            values[name] = value
        return values

    def state(self):
        values = self.show("ActiveState", "SubState")
        return values["ActiveState"], values["SubState"]

    def main_pid(self):
        return int(self.show("MainPID")["MainPID"])

    def wait_until(self, predicate, description, timeout=90, interval=0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(interval)
        message = f"timed out after {timeout} s waiting for {description}"
        raise AssertionError(f"{message}\n{self.context()}")

    def wait_for_state(self, active_state, sub_state=None, timeout=90):
        def reached():
            active, sub = self.state()
            return active == active_state and (sub_state is None or sub == sub_state)

        self.wait_until(reached, f"{UNIT} {active_state}/{sub_state or '*'}", timeout)

    def context(self):
        """Return the unit's state and recent journal, for assertion messages."""
        state = self.show("ActiveState", "SubState", "Result", "NRestarts", "StatusText")
        return f"{state}\n{self.journal_text()}"

    # configuration

    def write_config(self, text):
        self.box.write_file(CONFIG_PATH, text, mode=0o644)

    def add_drop_in(self, name, text):
        self.box.write_file(f"{DROP_IN_DIR}/{name}.conf", text)
        self.systemctl("daemon-reload")

    def hang(self, enabled):
        flag = self.box.share_dir / HANG_FILE_NAME
        if enabled:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    # journal and files

    def mark_journal(self):
        """Make the journal helpers read only entries written from now on.

        A time stamp, not a cursor: journalctl 252 printed nothing here for --after-cursor
        combined with --priority, while --since works.
        """
        self.since = self.box.run("date", "+%s.%N").stdout.strip()

    def _journal_args(self):
        return ["journalctl", "--no-pager", "--quiet", "-u", UNIT, f"--since=@{self.since}"]

    def journal_text(self, *args):
        return self.box.run(*self._journal_args(), *args, check=False).stdout

    def journal_entries(self, *args):
        output = self.box.run(*self._journal_args(), "-o", "json", *args).stdout
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def agent_messages(self, *args):
        """Return (priority, message) of the lines the agent itself wrote, in order."""
        entries = self.journal_entries(*args)
        return [
            (int(entry["PRIORITY"]), message_text(entry))
            for entry in entries
            if entry.get("SYSLOG_IDENTIFIER") == "ecr-agent"
        ]

    def docker_requests(self):
        log = self.box.share_dir / "docker-requests.log"
        return log.read_text().splitlines() if log.exists() else []

    def read_json(self, path):
        return json.loads(self.box.read_file(path))


def message_text(entry):
    message = entry.get("MESSAGE", "")
    if isinstance(message, list):  # journalctl -o json sends non-UTF-8 text as bytes
        return bytes(message).decode("utf-8", errors="replace")
    return message


@pytest.fixture
def agent(test_services):
    """The ecr-agent unit, stopped and disabled, with a fresh config and no drop-ins."""
    service = AgentService(test_services)
    service.hang(False)
    service.systemctl("stop", UNIT, check=False)
    service.systemctl("disable", "--quiet", UNIT, check=False)
    service.systemctl("reset-failed", UNIT, check=False)
    box = test_services
    box.run("rm", "-rf", DROP_IN_DIR, STATE_DIR, "/root/.docker", f"/home/{TEST_USER}/.docker")
    service.systemctl("daemon-reload")
    service.write_config(config_toml())
    box.write_file(ENVIRONMENT_FILE, environment_file(), mode=0o600)
    (box.share_dir / "docker-requests.log").unlink(missing_ok=True)
    service.mark_journal()
    yield service
    service.hang(False)
