"""Fixtures for the packaging tests: the .deb and .rpm built once per session, and
fresh systemd containers (tests/system/systemd_container.py) to install them in.

The builds run `make deb` and `make rpm` with their output moved to a temporary
directory, so build/ and dist/ of the source tree stay as they are.
"""

import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system.systemd_container import SystemdContainer, require_host_support

ROOT = Path(__file__).resolve().parents[2]
GUEST_SHARE = "/srv/ecr-agent-packages"

DEB_PACKAGES = (
    "dpkg-dev",
    "debhelper",
    "dh-python",
    "pybuild-plugin-pyproject",
    "python3-all",
    "python3-setuptools",
    "lintian",
)
RPM_PACKAGES = ("rpm", "rpmlint", "python3-build", "python3-installer", "python3-setuptools")

# Outputs measured during the run, printed in the terminal summary.
REPORT: dict[str, str] = {}

_container_numbers = itertools.count(1)


def pytest_terminal_summary(terminalreporter):
    if not REPORT:
        return
    terminalreporter.section("ecr-agent packages")
    for name, value in REPORT.items():
        terminalreporter.write_line(f"{name}: {value}")


def upstream_version():
    namespace = {}
    exec((ROOT / "ecr_agent/__init__.py").read_text(), namespace)  # noqa: S102
    return namespace["__version__"]


def require_build_host(packages):
    """Skip unless running as root on Debian with the given packages installed."""
    if os.geteuid() != 0:
        pytest.skip("packaging tests need root (the builds install their tools with apt-get)")
    if shutil.which("dpkg-query") is None:
        pytest.skip("packaging tests need Debian's dpkg")
    missing = []
    for package in packages:
        query = ["dpkg-query", "-W", "-f=${db:Status-Status}", package]
        status = subprocess.run(query, capture_output=True, text=True, check=False)
        if status.stdout != "installed":
            missing.append(package)
    if missing:
        pytest.skip(f"packaging tests need the Debian packages {' '.join(missing)}")


@dataclass
class Build:
    """One run of a build script: its package, log and linter output."""

    package: Path
    log: str
    lint: str


def run_make(target, work, **environment):
    """Run `make TARGET` with build/ and dist/ under `work`; return the build's log."""
    env = dict(os.environ)
    env.update(
        ECR_AGENT_BUILD_DIR=str(work / "build"),
        ECR_AGENT_DIST_DIR=str(work / "dist"),
        **environment,
    )
    result = subprocess.run(
        ["make", "-C", str(ROOT), target],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"make {target} exited {result.returncode}:\n{result.stdout[-6000:]}")
    return result.stdout


@pytest.fixture(scope="session")
def deb_builds(tmp_path_factory):
    """Revision 1 and revision 2 of the .deb, for install and upgrade tests."""
    require_build_host(DEB_PACKAGES)
    version = upstream_version()
    builds = {}
    for revision in (1, 2):
        work = tmp_path_factory.mktemp(f"deb-{revision}")
        log = run_make("deb", work, ECR_AGENT_DEB_REVISION=str(revision))
        package = work / "dist" / f"ecr-agent_{version}-{revision}_all.deb"
        lint = (work / "build/deb/lintian.txt").read_text()
        builds[revision] = Build(package, log, lint)

    first = builds[1]
    REPORT["deb"] = f"{first.package.name}, {first.package.stat().st_size} bytes"
    REPORT["lintian"] = first.lint.strip() or "(no tags)"
    return builds


@pytest.fixture(scope="session")
def rpm_build(tmp_path_factory):
    require_build_host(RPM_PACKAGES)
    work = tmp_path_factory.mktemp("rpm")
    log = run_make("rpm", work)
    packages = sorted((work / "dist").glob("ecr-agent-*.noarch.rpm"))
    assert len(packages) == 1, f"expected one RPM in {work / 'dist'}: {packages}"
    build = Build(packages[0], log, (work / "build/rpm/rpmlint.txt").read_text())

    REPORT["rpm"] = f"{build.package.name}, {build.package.stat().st_size} bytes"
    REPORT["rpmlint"] = build.lint.strip()
    return build


class Container:
    """A booted systemd container with the built packages in a shared directory."""

    def __init__(self, box):
        self.box = box

    def run(self, *command, check=True):
        return self.box.run(*command, check=check, env={"DEBIAN_FRONTEND": "noninteractive"})

    def dpkg_install(self, deb):
        shutil.copy2(deb, self.box.share_dir / deb.name)
        # stdin is not a terminal: a conffile prompt would fail the command, not hang it.
        return self.run("dpkg", "-i", f"{GUEST_SHARE}/{deb.name}")

    def package_status(self):
        query = ["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "ecr-agent"]
        return self.run(*query, check=False).stdout.strip()

    def exists(self, path):
        return self.run("test", "-e", path, check=False).returncode == 0

    def stat(self, path):
        """Return (octal mode, owner:group) of a path."""
        mode, owner = self.run("stat", "-c", "%a %U:%G", path).stdout.split()
        return mode, owner

    def unit_state(self, unit="ecr-agent.service"):
        enabled = self.run("systemctl", "is-enabled", unit, check=False).stdout.strip()
        active = self.run("systemctl", "is-active", unit, check=False).stdout.strip()
        return enabled, active


@pytest.fixture
def container(tmp_path, deb_builds):
    """A fresh systemd container without ecr-agent installed."""
    reason = require_host_support()
    if reason:
        pytest.skip(f"packaging install tests: {reason}")

    box = SystemdContainer(tmp_path / "base", tmp_path / "share", GUEST_SHARE)
    # A name of its own, so that stopping this container never touches the cgroup of a
    # system-test container booted by the same pytest process.
    box.cgroup_name = f"ecr-agent-packaging-{os.getpid()}-{next(_container_numbers)}"
    try:
        box.start()
        REPORT.setdefault("container boot", f"{box.boot_seconds:.2f} s ({box.boot_state})")
        guest = Container(box)
        # A policy-rc.d that exits 101 (Debian's Docker images ship one) makes
        # deb-systemd-invoke skip every start, restart and stop. A real host has none.
        guest.run("rm", "-f", "/usr/sbin/policy-rc.d")
        # The host's own ecr-agent package, if any, shows through the overlay.
        if guest.package_status().startswith("ii"):
            guest.run("dpkg", "--purge", "ecr-agent")
        yield guest
    finally:
        box.stop()
