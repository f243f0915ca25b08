"""The RPM built with Debian's rpmbuild: files, requirements, scriptlets and rpmlint.

rpm's database on Debian is empty, so the package is inspected, never installed.
"""

import subprocess

import pytest

from tests.packaging.conftest import ROOT, upstream_version

pytestmark = pytest.mark.packaging

UNIT_PATH = "/usr/lib/systemd/system/ecr-agent.service"


def rpm_query(package, *options):
    command = ["rpm", "-qp", *options, str(package)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def file_attributes(package):
    """Return {path: (octal mode, owner, flags)}, flags as rpm prints them ("cn")."""
    query_format = "[%{FILENAMES}\t%{FILEMODES:octal}\t%{FILEUSERNAME}\t%{FILEFLAGS:fflags}\n]"
    attributes = {}
    for line in rpm_query(package, "--queryformat", query_format).splitlines():
        path, mode, owner, flags = line.split("\t")
        attributes[path] = (mode, owner, flags)
    return attributes


def rpm_file(package, path):
    """Return the content of one file in the package."""
    cpio = subprocess.run(["rpm2cpio", str(package)], capture_output=True, check=True).stdout
    extract = ["cpio", "-i", "--quiet", "--to-stdout", f".{path}"]
    return subprocess.run(extract, input=cpio, capture_output=True, check=True).stdout


def test_rpmlint_no_errors(rpm_build):
    summary = rpm_build.lint.strip().splitlines()[-1]
    assert " 0 errors," in summary, rpm_build.lint
    assert ": E: " not in rpm_build.lint


def test_version_matches(rpm_build):
    assert rpm_query(rpm_build.package, "--queryformat", "%{VERSION}") == upstream_version()
    assert rpm_query(rpm_build.package, "--queryformat", "%{ARCH}") == "noarch"


def test_files_and_attributes(rpm_build):
    files = file_attributes(rpm_build.package)
    listed = rpm_query(rpm_build.package, "--list").split()
    assert sorted(listed) == sorted(files)

    sitelib = next(path for path in files if path.endswith("/site-packages/ecr_agent"))
    assert sitelib.startswith("/usr/lib/python3."), sitelib
    for path in (
        "/usr/bin/ecr-agent",
        f"{sitelib}/cli.py",
        f"{sitelib}-{upstream_version()}.dist-info/METADATA",
        UNIT_PATH,
        "/etc/ecr-agent/ecr-agent.toml",
        "/etc/sysconfig/ecr-agent",
        "/usr/share/man/man1/ecr-agent.1.gz",
        "/usr/share/man/man5/ecr-agent.toml.5.gz",
    ):
        assert path in files, path

    assert files["/etc/ecr-agent/ecr-agent.toml"] == ("100640", "root", "cn")
    assert files["/etc/sysconfig/ecr-agent"] == ("100644", "root", "cn")
    assert files["/usr/bin/ecr-agent"][0] == "100755"
    assert files[UNIT_PATH][2] == ""
    assert not any(path.startswith(("/var/", "/usr/local/")) for path in files)


def test_ships_tree_unit_and_config(rpm_build):
    unit = rpm_file(rpm_build.package, UNIT_PATH)
    assert unit == (ROOT / "systemd/ecr-agent.service").read_bytes()
    config = rpm_file(rpm_build.package, "/etc/ecr-agent/ecr-agent.toml")
    assert config == (ROOT / "ecr-agent.toml").read_bytes()
    script = rpm_file(rpm_build.package, "/usr/bin/ecr-agent")
    assert script.startswith(b"#!/usr/bin/python3\n")


def test_requires_python_packages(rpm_build):
    requires = {line.strip() for line in rpm_query(rpm_build.package, "--requires").splitlines()}
    assert {"python3-boto3", "python3-docker", "python3-sdnotify"} <= requires
    python_abi = next(item for item in requires if item.startswith("python(abi) = "))
    version = tuple(int(part) for part in python_abi.split("= ")[1].split("."))
    if version >= (3, 11):
        assert not any("tomli" in item for item in requires), requires
    else:
        assert "python3-tomli" in requires


def test_scriptlets_follow_systemd_macros(rpm_build):
    scripts = rpm_query(rpm_build.package, "--scripts")
    sections = {}
    current = None
    for line in scripts.splitlines():
        if line.endswith("scriptlet (using /bin/sh):"):
            current = line.split()[0]
            sections[current] = ""
        elif current:
            sections[current] += line + "\n"

    assert set(sections) == {"postinstall", "preuninstall", "postuninstall"}
    # Debian's rpm lacks systemd-rpm-macros, so these are the spec's fallbacks, which
    # follow the same contract: preset on first install, disable and stop on erase,
    # try-restart (only a running service) on upgrade.
    assert "$1 -eq 1" in sections["postinstall"]
    assert "preset ecr-agent.service" in sections["postinstall"]
    assert "$1 -eq 0" in sections["preuninstall"]
    assert "disable --now ecr-agent.service" in sections["preuninstall"]
    assert "$1 -ge 1" in sections["postuninstall"]
    assert "try-restart ecr-agent.service" in sections["postuninstall"]
    assert " start " not in scripts
