"""The Debian package: its contents, lintian, and install, upgrade, remove and purge
inside a container that boots systemd over a copy-on-write view of the host.

The host's dpkg database is never touched: every dpkg call runs inside the container.
"""

import io
import subprocess
import tarfile

import pytest

from tests.packaging.conftest import ROOT, upstream_version

pytestmark = pytest.mark.packaging

UNIT = "ecr-agent.service"
CONFFILE = "/etc/ecr-agent/ecr-agent.toml"
ENVIRONMENT_FILE = "/etc/default/ecr-agent"
STATE_DIR = "/var/lib/ecr-agent"
DIST_PACKAGES = "/usr/lib/python3/dist-packages"

RANCHER_SECRET = "STAND-IN-SECRET-rancher-key-packaging"
AWS_SECRET = "STAND-IN-SECRET-aws-key-packaging"

# A drop-in that turns the service into a plain sleeper, so that the maintainer scripts'
# start, restart and stop can be observed without AWS or Docker.
SLEEPER_DROP_IN = """[Service]
Type=simple
ExecStart=
ExecStart=/bin/sleep infinity
ExecReload=
WatchdogSec=0
"""


def deb_field(deb, name):
    result = subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def deb_members(deb):
    """Return {path: (TarInfo, content or None)} of the package's files, paths without "./"."""
    command = ["dpkg-deb", "--fsys-tarfile", str(deb)]
    archive_bytes = subprocess.run(command, capture_output=True, check=True).stdout
    members = {}
    with tarfile.open(fileobj=io.BytesIO(archive_bytes)) as archive:
        for member in archive:
            data = archive.extractfile(member).read() if member.isfile() else None
            members[member.name.removeprefix("./").rstrip("/")] = (member, data)
    return members


def control_file(deb, name):
    result = subprocess.run(
        ["dpkg-deb", "-I", str(deb), name], capture_output=True, text=True, check=False
    )
    return result.stdout


def install_sleeper(container):
    container.box.write_file(f"/etc/systemd/system/{UNIT}.d/sleep.conf", SLEEPER_DROP_IN)
    container.run("systemctl", "daemon-reload")


# -- the built package ---------------------------------------------------------------------


def test_lintian_no_errors_or_warnings(deb_builds):
    tags = deb_builds[1].lint.splitlines()
    serious = [line for line in tags if line.startswith(("E:", "W:"))]
    assert serious == [], deb_builds[1].lint


def test_version_matches_package(deb_builds):
    version = upstream_version()
    assert deb_field(deb_builds[1].package, "Version") == f"{version}-1"
    assert deb_field(deb_builds[2].package, "Version") == f"{version}-2"


def test_depends_on_debian_python_packages(deb_builds):
    depends = [item.strip() for item in deb_field(deb_builds[1].package, "Depends").split(",")]
    assert "python3-boto3" in depends
    assert "python3-docker" in depends
    assert "python3-sdnotify" in depends
    assert "python3-tomli | python3 (>> 3.11)" in depends
    assert deb_field(deb_builds[1].package, "Architecture") == "all"


def test_package_files_and_modes(deb_builds):
    members = deb_members(deb_builds[1].package)
    expected = (
        "usr/bin/ecr-agent",
        f"{DIST_PACKAGES.lstrip('/')}/ecr_agent/cli.py",
        "lib/systemd/system/ecr-agent.service",
        "etc/ecr-agent/ecr-agent.toml",
        "etc/default/ecr-agent",
        "usr/share/man/man1/ecr-agent.1.gz",
        "usr/share/man/man5/ecr-agent.toml.5.gz",
        "usr/share/doc/ecr-agent/copyright",
    )
    for path in expected:
        assert path in members, path

    config, _ = members["etc/ecr-agent/ecr-agent.toml"]
    assert oct(config.mode) == "0o640"
    assert (config.uname, config.gname) == ("root", "root")
    _, script = members["usr/bin/ecr-agent"]
    assert script.startswith(b"#!/usr/bin/python3\n")
    assert not any(path.startswith(("var/", "usr/local/")) for path in members)


def test_ships_tree_unit_and_config(deb_builds):
    members = deb_members(deb_builds[1].package)
    assert (
        members["lib/systemd/system/ecr-agent.service"][1]
        == (ROOT / "systemd/ecr-agent.service").read_bytes()
    )
    assert members["etc/ecr-agent/ecr-agent.toml"][1] == (ROOT / "ecr-agent.toml").read_bytes()
    environment = members["etc/default/ecr-agent"][1].decode()
    settings = [line for line in environment.splitlines() if line and not line.startswith("#")]
    assert settings == [], "every line of /etc/default/ecr-agent is a comment"
    for name in ("HTTPS_PROXY", "NO_PROXY", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"):
        assert f"#{name}=" in environment


def test_maintainer_scripts_keep_unit_disabled(deb_builds):
    deb = deb_builds[1].package
    postinst = control_file(deb, "postinst")
    assert "deb-systemd-invoke try-restart 'ecr-agent.service'" in postinst
    assert "deb-systemd-helper enable" in postinst
    assert "was-enabled" in postinst, "postinst enables the unit only if it was enabled"
    assert "deb-systemd-invoke start" not in postinst
    assert "deb-systemd-invoke stop ecr-agent.service" in control_file(deb, "prerm")
    postrm = control_file(deb, "postrm")
    assert f"rm -rf {STATE_DIR}" in postrm


# -- installed in a container ----------------------------------------------------------------


def test_install_runs_debian_python(container, deb_builds):
    container.dpkg_install(deb_builds[1].package)

    assert container.package_status() == f"ii {upstream_version()}-1"
    version = container.run("/usr/bin/ecr-agent", "--version").stdout.strip()
    assert version == f"ecr-agent {upstream_version()}"
    probe = (
        "import boto3, docker, sdnotify, ecr_agent.cli; "
        "print('\\n'.join(m.__file__ for m in (ecr_agent.cli, boto3, docker, sdnotify)))"
    )
    modules = container.run("/usr/bin/python3", "-c", probe).stdout.split()
    assert len(modules) == 4
    for path in modules:
        assert path.startswith(f"{DIST_PACKAGES}/"), path


def test_install_leaves_unit_disabled(container, deb_builds):
    container.dpkg_install(deb_builds[1].package)

    assert container.unit_state() == ("disabled", "inactive")
    verify = container.run("systemd-analyze", "verify", f"/lib/systemd/system/{UNIT}")
    assert verify.returncode == 0
    assert not container.exists(STATE_DIR)


def test_conffile_registered_with_mode(container, deb_builds):
    container.dpkg_install(deb_builds[1].package)

    query = ["dpkg-query", "-W", "-f=${Conffiles}", "ecr-agent"]
    conffiles = {
        line.split()[0] for line in container.run(*query).stdout.splitlines() if line.strip()
    }
    assert conffiles == {CONFFILE, ENVIRONMENT_FILE}
    assert container.stat(CONFFILE) == ("640", "root:root")
    assert container.stat(ENVIRONMENT_FILE) == ("644", "root:root")


def test_upgrade_keeps_edited_conffile(container, deb_builds):
    container.dpkg_install(deb_builds[1].package)
    edit = f'\n[rancher]\nsecret_key = "{RANCHER_SECRET}"\n'
    container.run("sh", "-c", f"printf '%s' '{edit}' >> {CONFFILE}")
    edited = container.run("cat", CONFFILE).stdout

    upgrade = container.dpkg_install(deb_builds[2].package)

    assert container.package_status() == f"ii {upstream_version()}-2"
    assert container.run("cat", CONFFILE).stdout == edited
    assert container.stat(CONFFILE) == ("640", "root:root")
    assert "Configuration file" not in upgrade.stdout, "dpkg asked about the conffile"
    leftovers = container.run("sh", "-c", "ls /etc/ecr-agent/").stdout.split()
    assert leftovers == ["ecr-agent.toml"]


def test_upgrade_restarts_only_running_service(container, deb_builds):
    container.dpkg_install(deb_builds[1].package)
    install_sleeper(container)

    # Enabled but stopped: the upgrade must not start it.
    container.run("systemctl", "enable", UNIT)
    container.dpkg_install(deb_builds[2].package)
    assert container.unit_state() == ("enabled", "inactive")

    # Running: the upgrade restarts it.
    container.run("systemctl", "start", UNIT)
    before = container.run("systemctl", "show", "-P", "MainPID", UNIT).stdout.strip()
    container.dpkg_install(deb_builds[1].package)  # a downgrade runs the same scripts
    after = container.run("systemctl", "show", "-P", "MainPID", UNIT).stdout.strip()
    assert container.unit_state() == ("enabled", "active")
    assert after not in ("0", before)


def test_remove_stops_running_service(container, deb_builds):
    container.dpkg_install(deb_builds[1].package)
    install_sleeper(container)
    container.run("systemctl", "start", UNIT)
    assert container.unit_state()[1] == "active"

    container.run("dpkg", "--remove", "ecr-agent")

    assert container.unit_state()[1] == "inactive"
    assert container.exists(CONFFILE), "remove keeps the configuration"


def test_purge_leaves_no_files_or_secrets(container, deb_builds):
    # Files changed after this mark are searched for secrets and leftovers.
    container.run("touch", "/run/before-install")
    container.dpkg_install(deb_builds[1].package)
    container.run("sh", "-c", f"echo 'secret_key = \"{RANCHER_SECRET}\"' >> {CONFFILE}")
    container.run("sh", "-c", f"echo 'AWS_SECRET_ACCESS_KEY={AWS_SECRET}' >> {ENVIRONMENT_FILE}")
    # The running service gets its state directory from StateDirectory=.
    install_sleeper(container)
    container.run("systemctl", "enable", "--now", UNIT)
    assert container.stat(STATE_DIR) == ("700", "root:root")
    container.run("sh", "-c", f"echo '{{\"registries\": {{}}}}' > {STATE_DIR}/state.json")
    container.run("rm", "-r", f"/etc/systemd/system/{UNIT}.d")

    # The search below finds the stand-in secrets while the package is installed.
    scanned = "/etc /var /root /home /run /tmp /opt /usr/local"
    newer = f"find {scanned} -xdev -newer /run/before-install"
    search = f"{newer} -type f -print0 | xargs -0 -r grep -l STAND-IN-SECRET || true"
    assert sorted(container.run("sh", "-c", search).stdout.split()) == [
        ENVIRONMENT_FILE,
        CONFFILE,
    ]

    container.run("dpkg", "--purge", "ecr-agent")

    assert container.package_status() in ("", "un ")
    for path in (STATE_DIR, "/etc/ecr-agent", ENVIRONMENT_FILE, f"/etc/systemd/system/{UNIT}"):
        assert not container.exists(path), path
    assert container.unit_state()[0] in ("", "not-found")
    assert container.run("sh", "-c", search).stdout.split() == []
    named = container.run("sh", "-c", f"{newer} -name '*ecr-agent*'").stdout.split()
    assert named == []
