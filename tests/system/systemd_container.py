"""Boot the host's systemd as PID 1 of new namespaces over a copy-on-write view of /.

The container gets new PID, mount, UTS, IPC, network and cgroup namespaces. Its root file
system is an overlay whose lower layer is the host's / (read-only use) and whose upper
layer is a tmpfs, so nothing is written to the host's files. The host keeps only the work
directory and one cgroup v2 directory, and ``stop()`` removes both.

Run as a script with ``init CONFIG_JSON``, this file is the container's first PID 1: it
sets up the mounts, switches root and executes systemd.
"""

import ctypes
import json
import os
import pty
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEMD = "/lib/systemd/systemd"
CLONE_NEWCGROUP = 0x02000000
PR_SET_PDEATHSIG = 1

# Host units that would start inside the container: consoles, and services that belong to
# the host. Units enabled on the host in /etc/systemd/system/*.wants are masked as well.
ALWAYS_MASKED = (
    "console-getty.service",
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "apparmor.service",
    "remote-fs.target",
)

# Capabilities that act on the whole host kernel, which systemd-nspawn drops too.
DROPPED_CAPABILITIES = (
    "sys_module",
    "sys_rawio",
    "sys_time",
    "sys_pacct",
    "mac_admin",
    "mac_override",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
    "ipc_lock",
)

# Character devices created in the container's /dev: name -> (major, minor).
DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}


class ContainerError(RuntimeError):
    pass


def kill_when_parent_dies():
    """Ask for SIGKILL when the test process dies, so that no container outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def host_units_to_mask(keep=()):
    """Return unit names enabled on the host by the administrator, plus ALWAYS_MASKED."""
    names = set(ALWAYS_MASKED)
    for wants in Path("/etc/systemd/system").glob("*.wants"):
        names.update(link.name for link in wants.iterdir())
    return sorted(names - set(keep))


class SystemdContainer:
    """One booted systemd container; ``run()`` executes commands inside it."""

    def __init__(self, base_dir, share_dir, guest_share="/srv/ecr-agent-test", keep_units=()):
        self.base_dir = Path(base_dir)
        self.share_dir = Path(share_dir)
        self.guest_share = guest_share
        self.cgroup_name = f"ecr-agent-test-{os.getpid()}"
        self.keep_units = keep_units
        self.console_log = self.base_dir / "console.log"
        self.init_pid = None
        self.boot_seconds = None
        self.boot_state = None
        self._launcher = None
        self._console_fd = None
        self._console_thread = None

    # -- host side ---------------------------------------------------------------------

    def start(self, timeout=120):
        """Boot systemd and wait until it reports running or degraded."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.share_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.base_dir / "init.pid"
        pid_file.unlink(missing_ok=True)
        started = time.monotonic()

        self._launch(pid_file)
        self.init_pid = self._wait_for_pid_file(pid_file)
        self._wait_for_systemd(deadline=started + timeout)

        result = self.run(
            "timeout", str(timeout), "systemctl", "is-system-running", "--wait", check=False
        )
        self.boot_state = result.stdout.strip()
        self.boot_seconds = time.monotonic() - started
        if self.boot_state not in ("running", "degraded"):
            failed = self.run("systemctl", "--failed", "--no-pager", check=False).stdout
            raise ContainerError(f"systemd reached state {self.boot_state!r}:\n{failed}")
        return self

    def _launch(self, pid_file):
        config = {
            "base_dir": str(self.base_dir),
            "pid_file": str(pid_file),
            "cgroup_name": self.cgroup_name,
            "share_dir": str(self.share_dir),
            "guest_share": self.guest_share,
            "masked_units": host_units_to_mask(self.keep_units),
        }
        command = [
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--propagation",
            "private",
            # PID 1 gets SIGKILL when unshare dies, which ends every process inside.
            "--kill-child=SIGKILL",
            sys.executable,
            str(Path(__file__).resolve()),
            "init",
            json.dumps(config),
        ]
        # A pseudo-terminal becomes the container's /dev/console; its output goes to a file.
        master, slave = pty.openpty()
        self._console_fd = master
        self._launcher = subprocess.Popen(
            command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=kill_when_parent_dies,
        )
        os.close(slave)
        self._console_thread = threading.Thread(target=self._copy_console, daemon=True)
        self._console_thread.start()

    def _copy_console(self):
        with open(self.console_log, "ab") as log:
            while True:
                try:
                    data = os.read(self._console_fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                log.write(data)
                log.flush()

    def _wait_for_pid_file(self, pid_file):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip():
                return int(pid_file.read_text())
            if self._launcher.poll() is not None:
                break
            time.sleep(0.05)
        raise ContainerError(f"container init did not start:\n{self.console_text()}")

    def _wait_for_systemd(self, deadline):
        while time.monotonic() < deadline:
            if not Path(f"/proc/{self.init_pid}").exists():
                raise ContainerError(f"container PID 1 exited:\n{self.console_text()}")
            comm = Path(f"/proc/{self.init_pid}/comm").read_text().strip()
            if comm == "systemd":
                probe = self._nsenter("test", "-S", "/run/systemd/private")
                if subprocess.run(probe, check=False).returncode == 0:
                    return
            time.sleep(0.1)
        raise ContainerError(f"systemd did not start:\n{self.console_text()}")

    def console_text(self):
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _nsenter(self, *command, env=None):
        environment = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0"}
        environment.update(env or {})
        assignments = [f"{key}={value}" for key, value in environment.items()]
        return ["nsenter", "-t", str(self.init_pid), "-a", "env", "-i", *assignments, *command]

    def run(self, *command, check=True, input=None, timeout=300, env=None):
        """Run a command in all of the container's namespaces and return the CompletedProcess."""
        result = subprocess.run(
            self._nsenter(*command, env=env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ContainerError(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def write_file(self, path, text, mode=0o644):
        """Write a file inside the container through the shared directory."""
        staging = self.share_dir / "staging"
        staging.write_text(text)
        self.run("install", "-D", "-m", f"{mode:o}", f"{self.guest_share}/staging", path)
        staging.unlink()

    def read_file(self, path):
        return self.run("cat", path).stdout

    def stop(self):
        """Power the container off, then remove its cgroup and work directory."""
        if self.init_pid is not None and self._is_container_init(self.init_pid):
            os.kill(self.init_pid, signal.SIGRTMIN + 4)  # systemd: poweroff
            if not self._wait_gone(self.init_pid, 20):
                os.kill(self.init_pid, signal.SIGKILL)
                self._wait_gone(self.init_pid, 5)
        if self._launcher is not None:
            try:
                self._launcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._launcher.kill()
                self._launcher.wait(timeout=10)
        if self._console_fd is not None:
            os.close(self._console_fd)
            self._console_fd = None
        self._remove_cgroup()
        self.init_pid = None

    @staticmethod
    def _is_container_init(pid):
        """True when ``pid`` runs in another PID namespace (not a reused host PID)."""
        try:
            return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        except OSError:
            return False

    @staticmethod
    def _wait_gone(pid, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists():
                return True
            time.sleep(0.1)
        return False

    def _remove_cgroup(self):
        """Remove this container's cgroup and those of test processes that were killed."""
        mountpoint = self.base_dir / "cgroup2"
        mountpoint.mkdir(parents=True, exist_ok=True)
        # A private mount namespace keeps the cgroup2 mount off the host's mount table.
        # Directories are named ecr-agent-test-PID after the test process that made them.
        script = f"""
            mount -t cgroup2 cgroup2 '{mountpoint}' || exit 1
            for group in '{mountpoint}'/ecr-agent-test-*; do
                [ -d "$group" ] || continue
                owner=${{group##*-}}
                if [ "$owner" = {os.getpid()} ] || [ ! -d "/proc/$owner" ]; then
                    find "$group" -depth -type d -exec rmdir {{}} +
                fi
            done
            umount '{mountpoint}'
        """
        subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], check=False
        )


# -- container side: PID 1 before systemd -------------------------------------------------


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def init_main(config):
    """Set up the container's mounts as its PID 1, then execute systemd."""
    base = Path(config["base_dir"])
    root = base / "root"

    # /proc is still the host's procfs, so /proc/self names the host PID.
    Path(config["pid_file"]).write_text(os.readlink("/proc/self"))
    enter_own_cgroup(base, config["cgroup_name"])
    mount_overlay_root(base, root)
    mount_api_filesystems(root)
    mount_dev(root)

    share = root / config["guest_share"].lstrip("/")
    share.mkdir(parents=True, exist_ok=True)
    mount("--bind", config["share_dir"], str(share))
    configure_guest(root, config["masked_units"])

    os.chdir(root)
    os.makedirs("oldroot", exist_ok=True)
    subprocess.run(["pivot_root", ".", "oldroot"], check=True)
    os.chdir("/")
    subprocess.run(["umount", "-l", "/oldroot"], check=True)
    os.rmdir("/oldroot")
    # systemd makes / shared only when it is not in a container, and its credential and
    # namespace setup (LoadCredential=) depends on it, so do what container managers do.
    # The peer groups stay inside this mount namespace, whose mounts started private.
    mount("--make-rshared", "/")

    bounding = ",".join(f"-{name}" for name in DROPPED_CAPABILITIES)
    environment = {"container": "ecr-agent-test", "TERM": "vt220", "PATH": CONTAINER_PATH}
    argv = ["setpriv", "--inh-caps=-all", f"--bounding-set={bounding}", SYSTEMD]
    os.execve("/usr/bin/setpriv", [*argv, "--log-level=info"], environment)  # noqa: S606


def enter_own_cgroup(base, name):
    """Move into a new cgroup v2 directory and make it the root of a new cgroup namespace.

    A private cgroup2 mount works on hosts with a unified, hybrid or v1-only hierarchy.
    """
    mountpoint = base / "cgroup2"
    mountpoint.mkdir(parents=True, exist_ok=True)
    mount("-t", "cgroup2", "cgroup2", str(mountpoint))
    group = mountpoint / name
    group.mkdir(exist_ok=True)
    (group / "cgroup.procs").write_text("0")
    subprocess.run(["umount", str(mountpoint)], check=True)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWCGROUP) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare(CLONE_NEWCGROUP): {os.strerror(error)}")


def mount_overlay_root(base, root):
    upper = base / "overlay"
    upper.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", "mode=755,size=4G", "ecr-agent-test-upper", str(upper))
    (upper / "upper").mkdir()
    (upper / "work").mkdir()
    options = f"lowerdir=/,upperdir={upper}/upper,workdir={upper}/work"
    mount("-t", "overlay", "-o", options, "ecr-agent-test-root", str(root))


def mount_api_filesystems(root):
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(root / "proc"))
    # Kernel-wide knobs stay read-only, as systemd-nspawn arranges.
    for name in ("sys", "sysrq-trigger"):
        path = root / "proc" / name
        if path.exists():
            mount("--bind", str(path), str(path))
            mount("-o", "remount,bind,ro,nosuid,nodev,noexec", str(path))
    mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", str(root / "sys"))
    cgroup = str(root / "sys/fs/cgroup")
    mount("-t", "cgroup2", "-o", "nosuid,nodev,noexec", "cgroup2", cgroup)
    mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", str(root / "run"))
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", str(root / "tmp"))


def mount_dev(root):
    dev = root / "dev"
    mount("-t", "tmpfs", "-o", "mode=755,nosuid,size=64M", "ecr-agent-test-dev", str(dev))
    for name, (major, minor) in DEVICES.items():
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)  # noqa: S103 - as on every Linux /dev
    (dev / "pts").mkdir()
    (dev / "shm").mkdir()
    pts_options = "newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec"
    mount("-t", "devpts", "-o", pts_options, "devpts", str(dev / "pts"))
    os.symlink("pts/ptmx", dev / "ptmx")
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", str(dev / "shm"))
    os.symlink("/proc/self/fd", dev / "fd")
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{number}", dev / name)
    if os.isatty(0):
        (dev / "console").touch()
        mount("--bind", os.ttyname(0), str(dev / "console"))


def configure_guest(root, masked_units):
    etc = root / "etc"
    (etc / "hostname").write_text("ecr-agent-test\n")
    (etc / "machine-id").write_text(os.urandom(16).hex() + "\n")
    (etc / "fstab").write_text("# no file systems to mount in the test container\n")
    for unit in masked_units:
        link = etc / "systemd/system" / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")


def require_host_support():
    """Return a reason why a container cannot boot here, or None."""
    if os.geteuid() != 0:
        return "needs root to create namespaces and mounts"
    for command in ("unshare", "nsenter", "setpriv", "mount", "umount", "pivot_root"):
        if shutil.which(command) is None:
            return f"needs {command} (Debian package util-linux or mount)"
    if not Path(SYSTEMD).exists():
        return f"needs {SYSTEMD} (Debian package systemd)"
    filesystems = Path("/proc/filesystems").read_text()
    for name in ("overlay", "cgroup2"):
        if f"\t{name}\n" not in filesystems:
            return f"needs kernel support for the {name} file system"
    return None


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "init":
        sys.exit(f"usage: {sys.argv[0]} init CONFIG_JSON")
    init_main(json.loads(sys.argv[2]))
