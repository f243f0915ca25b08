"""Run a shell script as root in a private mount namespace.

Mounts made by the script (a small tmpfs, a read-only bind mount, a password file bound
over /etc/passwd) exist only in that namespace and end with it, so the host's mounts and
its /etc stay as they are.
"""

import os
import shlex
import shutil
import subprocess

import pytest


def require_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for mount namespaces and tmpfs mounts")
    missing = [name for name in ("unshare", "mount") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian package util-linux / mount)")


def run_script(script: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``script`` with ``sh -u`` in a new mount namespace with private propagation."""
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-uc", script]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"namespace script failed ({result.returncode}): {result.stderr}")
    return result


def quote(*words) -> str:
    return " ".join(shlex.quote(str(word)) for word in words)


def read_only_etc() -> str:
    """Return the commands that make /etc read-only inside the namespace."""
    return "mount --bind /etc /etc && mount -o remount,bind,ro /etc || exit 90\n"
