"""A local ECR in a network namespace: moto, a TLS registry and a private dockerd.

Inside the namespace, moto serves the ECR API on http://127.0.0.1:5000. Debian's
``docker-registry`` serves https://123456789012.dkr.ecr.us-east-1.amazonaws.com with
htpasswd auth for user AWS and moto's password for that account. The registry name
resolves to 198.18.0.1 through ``/etc/netns/NAME/hosts``. A private dockerd trusts the
rig's CA and listens on a unix socket in the rig directory. An image ``app:latest`` is
pushed to the registry and removed locally, so a pull must authenticate.

    python -m tests.e2e.rig up|down|status|demo

Needs root, ip (iproute2), dockerd and docker (docker.io), docker-registry, openssl,
moto[server] in ECR_AGENT_MOTO_PYTHON or this interpreter, and bcrypt in this
interpreter or Debian's python3. gcc (with static libc) adds a sleep binary to the image
so that a Swarm task can run. Everything lives under the rig directory, apart from the
namespace itself and the symlink /etc/netns/NAME. The host's /etc/hosts, /etc/docker
and services are left alone.
"""

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
ACCOUNT = "123456789012"
REGION = "us-east-1"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
IMAGE = f"{HOST}/app:latest"
# dockerd treats registries on 127.0.0.0/8 as insecure and then skips TLS verification,
# so the registry listens on an address outside loopback, added to the namespace's lo.
REGISTRY_ADDRESS = "198.18.0.1"
MOTO_PORT = 5000
MOTO_URL = f"http://127.0.0.1:{MOTO_PORT}"
DEFAULT_NAMESPACE = "ecragent-e2e"
DEFAULT_DIRECTORY = Path(tempfile.gettempdir()) / "ecr-agent-e2e"
DEBIAN_DOCKER = "/usr/bin/docker"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Stand-in AWS keys: moto accepts any.
AWS_ACCESS_KEY_ID = "AKIASTANDINKEY000001"
AWS_SECRET_ACCESS_KEY = "STAND-IN-AWS-SECRET-KEY-do-not-log"

SLEEP_SOURCE = """\
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 0;
    if (seconds) { sleep(seconds); return 0; }
    for (;;) pause();
}
"""

# `ip netns exec` mounts a fresh /sys, which hides the cgroup hierarchies that runc
# needs. The script mounts them again in that private mount namespace, hides a system
# containerd socket so that dockerd starts its own containerd, then becomes dockerd.
DOCKERD_SCRIPT = """\
printf '%s\\n' "$CGROUP_MOUNTS" | while read -r point type options; do
    [ -n "$point" ] || continue
    mkdir -p "$point"
    if [ "$type" = tmpfs ]; then source=tmpfs; else source=$type; fi
    mount -t "$type" -o "$options" "$source" "$point"
done
if [ -d /run/containerd ]; then mount -t tmpfs tmpfs /run/containerd; fi
exec "$@"
"""

PASSWORD_SCRIPT = """\
import base64, sys
import boto3
client = boto3.client(
    "ecr", region_name=sys.argv[1], endpoint_url=sys.argv[2],
    aws_access_key_id=sys.argv[3], aws_secret_access_key="unused",
)
data = client.get_authorization_token(registryIds=[sys.argv[4]])["authorizationData"][0]
print(base64.b64decode(data["authorizationToken"]).decode().split(":", 1)[1])
"""

BCRYPT_SCRIPT = """\
import sys
import bcrypt
password = sys.stdin.read().encode()
print(bcrypt.hashpw(password, bcrypt.gensalt(10)).decode())
"""

REGISTRY_PROBE = """\
import http.client, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
connection = http.client.HTTPSConnection(sys.argv[1], 443, timeout=2, context=context)
connection.request("GET", "/v2/")
sys.exit(0 if connection.getresponse().status == 401 else 1)
"""

HTTP_PROBE = """\
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2)
"""


class RigUnavailable(Exception):
    """The machine lacks something the rig needs; the message names it."""


class RigError(Exception):
    """Starting or using the rig failed; the message names the step and its log."""


def moto_python() -> str:
    return os.environ.get("ECR_AGENT_MOTO_PYTHON") or sys.executable


def base_environment(home: Path, **extra) -> dict:
    """Return an explicit, minimal environment for a rig subprocess."""
    environment = {
        "PATH": SYSTEM_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    environment.update(extra)
    return environment


def missing_requirements() -> str | None:
    """Return why the rig cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "the e2e rig needs root (network namespaces, dockerd)"
    commands = {
        "ip": "iproute2",
        "dockerd": "docker.io",
        "docker-registry": "docker-registry",
        "openssl": "openssl",
    }
    missing = [f"{c} ({p})" for c, p in commands.items() if not _which(c)]
    if not os.access(DEBIAN_DOCKER, os.X_OK):
        missing.append(f"{DEBIAN_DOCKER} (docker.io)")
    if missing:
        return "the e2e rig needs " + ", ".join(missing)
    if not _python_has(moto_python(), "moto.server, boto3"):
        return (
            f"the e2e rig needs moto[server] and boto3 in {moto_python()} (ECR_AGENT_MOTO_PYTHON)"
        )
    if _bcrypt_python() is None:
        return "the e2e rig needs bcrypt (pip install bcrypt, or apt-get install python3-bcrypt)"
    return None


def _which(command: str) -> str | None:
    return shutil.which(command, path=SYSTEM_PATH)


@functools.cache
def _python_has(python: str, modules: str) -> bool:
    try:
        result = subprocess.run(
            [python, "-c", f"import {modules}"], capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _bcrypt_python() -> str | None:
    for python in (sys.executable, moto_python(), "/usr/bin/python3"):
        if _python_has(python, "bcrypt"):
            return python
    return None


class Rig:
    """One rig: its directory, its namespace and the processes it started."""

    def __init__(self, directory: Path = DEFAULT_DIRECTORY, namespace: str = DEFAULT_NAMESPACE):
        self.directory = Path(directory)
        self.namespace = namespace
        self.run_dir = self.directory / "run"
        self.log_dir = self.run_dir / "logs"
        self.home = self.run_dir / "home"
        self.socket = self.run_dir / "docker.sock"
        self.docker_host = f"unix://{self.socket}"
        self.netns_etc = self.run_dir / "netns-etc"
        self.pki = self.run_dir / "pki"
        self.registry_dir = self.run_dir / "registry"
        self._processes: dict[str, subprocess.Popen] = {}
        state = self._load_state()
        self.password = state.get("password", "")
        self.has_sleep_binary = state.get("has_sleep_binary", False)
        self.setup_seconds = state.get("setup_seconds")

    # -- state shared between `up` and a later `down` or `status` --------------------

    @property
    def _state_file(self) -> Path:
        return self.run_dir / "rig.json"

    def _save_state(self) -> None:
        pids = self._load_state().get("pids", {})
        pids.update({name: process.pid for name, process in self._processes.items()})
        state = {
            "namespace": self.namespace,
            "pids": pids,
            "password": self.password,
            "has_sleep_binary": self.has_sleep_binary,
            "setup_seconds": self.setup_seconds,
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(json.dumps(state, indent=2))

    def _load_state(self) -> dict:
        try:
            return json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}

    # -- up --------------------------------------------------------------------------

    def up(self) -> "Rig":
        """Start everything; on failure, stop what was started and raise RigError."""
        reason = missing_requirements()
        if reason:
            raise RigUnavailable(reason)

        started = time.monotonic()
        self.down(quiet=True)
        for path in (self.log_dir, self.home):
            path.mkdir(parents=True, exist_ok=True)
        try:
            self._make_pki()
            self._make_namespace()
            self.start_dockerd(wait=False)
            self._start_moto()
            self._wait_for_dockerd()
            self.password = self._read_moto_password()
            self.set_registry_password(self.password)
            self.start_registry()
            self._push_image()
        except BaseException:
            self.down(quiet=True)
            raise
        self.setup_seconds = round(time.monotonic() - started, 1)
        self._save_state()
        return self

    def _make_pki(self) -> None:
        """Make a CA and a server certificate for the registry host and address."""
        self.pki.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = self.pki / "ca.key", self.pki / "ca.crt"
        key, request, cert = (self.pki / f"server.{kind}" for kind in ("key", "csr", "crt"))
        extensions = self.pki / "server.ext"
        extensions.write_text(
            f"subjectAltName=DNS:{HOST},IP:{REGISTRY_ADDRESS}\n"
            "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        )
        new_key = ["-newkey", "rsa:2048", "-nodes"]
        ca_files = ["-keyout", ca_key, "-out", ca_cert]
        self._run(["openssl", "req", "-x509", *new_key, "-subj", "/CN=ecr-agent e2e CA", *ca_files])
        self._run(
            ["openssl", "req", *new_key, "-subj", f"/CN={HOST}", "-keyout", key, "-out", request]
        )
        signing = ["-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-extfile", extensions]
        self._run(["openssl", "x509", "-req", "-in", request, *signing, "-days", "2", "-out", cert])

    def _make_namespace(self) -> None:
        """Create the namespace and the files `ip netns exec` mounts over its /etc."""
        certs = self.netns_etc / "docker" / "certs.d" / HOST
        certs.mkdir(parents=True)
        shutil.copy(self.pki / "ca.crt", certs / "ca.crt")
        (self.netns_etc / "hosts").write_text(
            f"127.0.0.1 localhost\n{REGISTRY_ADDRESS} {HOST}\n::1 localhost\n"
        )
        (self.netns_etc / "resolv.conf").write_text("")  # no DNS inside the namespace

        netns_root = Path("/etc/netns")
        if not netns_root.exists():
            netns_root.mkdir()
            (self.directory / "created-etc-netns").touch()
        link = netns_root / self.namespace
        if link.is_symlink() or link.exists():
            raise RigError(f"{link} exists already; remove it or pick another namespace name")
        link.symlink_to(self.netns_etc)

        self._run(["ip", "netns", "add", self.namespace])
        self._run(self.netns_command("ip", "link", "set", "lo", "up"))
        self._run(self.netns_command("ip", "addr", "add", f"{REGISTRY_ADDRESS}/32", "dev", "lo"))

    def _start_moto(self) -> None:
        command = [moto_python(), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(MOTO_PORT)]
        self._start("moto", self.netns_command(*command), base_environment(self.home))
        url = f"{MOTO_URL}/moto-api/data.json"
        self._wait("moto", lambda: self._probe(HTTP_PROBE, url), 60)

    def _read_moto_password(self) -> str:
        command = [
            moto_python(),
            "-c",
            PASSWORD_SCRIPT,
            REGION,
            MOTO_URL,
            AWS_ACCESS_KEY_ID,
            ACCOUNT,
        ]
        result = self._run(self.netns_command(*command), environment=base_environment(self.home))
        return result.stdout.strip()

    def set_registry_password(self, password: str) -> None:
        """Write the registry's htpasswd: user AWS with ``password``, bcrypt-hashed."""
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [_bcrypt_python(), "-c", BCRYPT_SCRIPT],
            input=password,
            capture_output=True,
            text=True,
            check=True,
            env=base_environment(self.home),
        )
        htpasswd = self.registry_dir / "htpasswd"
        temporary = htpasswd.with_suffix(".tmp")
        temporary.write_text(f"AWS:{result.stdout.strip()}\n")
        temporary.replace(htpasswd)

    def start_registry(self) -> None:
        config = self.registry_dir / "config.yml"
        config.write_text(
            textwrap.dedent(f"""\
            version: 0.1
            log:
              level: info
            storage:
              filesystem:
                rootdirectory: {self.registry_dir / "data"}
            http:
              addr: {REGISTRY_ADDRESS}:443
              tls:
                certificate: {self.pki / "server.crt"}
                key: {self.pki / "server.key"}
            auth:
              htpasswd:
                realm: ecr-agent-e2e
                path: {self.registry_dir / "htpasswd"}
            """)
        )
        command = self.netns_command(_which("docker-registry"), "serve", str(config))
        self._start("registry", command, base_environment(self.home))
        probe = [REGISTRY_PROBE, HOST, str(self.pki / "ca.crt")]
        self._wait("registry", lambda: self._probe(*probe), 30)

    def stop_registry(self) -> None:
        self._stop("registry", "docker-registry")

    def start_dockerd(self, wait: bool = True) -> None:
        (self.run_dir / "daemon.json").write_text("{}\n")
        dockerd = [
            _which("dockerd"),
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=vfs",
            f"--data-root={self.run_dir / 'docker-data'}",
            f"--exec-root={self.run_dir / 'docker-exec'}",
            f"--config-file={self.run_dir / 'daemon.json'}",
            f"--pidfile={self.run_dir / 'docker.pid'}",
            f"--host={self.docker_host}",
        ]
        environment = base_environment(self.home, CGROUP_MOUNTS=_cgroup_mounts())
        command = self.netns_command("sh", "-c", DOCKERD_SCRIPT, "dockerd", *dockerd)
        self._start("dockerd", command, environment)
        if wait:
            self._wait_for_dockerd()

    def _wait_for_dockerd(self) -> None:
        self._wait("dockerd", self.dockerd_responds, 90)

    def stop_dockerd(self) -> None:
        self._stop("dockerd", "dockerd", timeout=60)

    def dockerd_responds(self) -> bool:
        """Return whether GET /_ping on the rig's docker socket returns OK."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(2)
                connection.connect(str(self.socket))
                connection.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                response = connection.recv(4096)
        except OSError:
            return False
        return response.startswith(b"HTTP/1.") and b" 200 " in response.split(b"\r\n", 1)[0]

    def _push_image(self) -> None:
        """Push app:latest built offline (docker import), then remove it locally."""
        image_dir = self.run_dir / "image"
        rootfs = image_dir / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "hello.txt").write_text("hello from the ecr-agent e2e rig\n")
        self.has_sleep_binary = self._build_sleep(image_dir, rootfs / "bin" / "sleep")
        archive = image_dir / "rootfs.tar"
        self._run(["tar", "-C", rootfs, "-cf", archive, "."])

        pusher = self.run_dir / "pusher-config"
        self.docker("import", str(archive), IMAGE)
        self.docker(
            "login", "--username", "AWS", "--password-stdin", HOST,
            config_dir=pusher, stdin_text=self.password,
        )  # fmt: skip
        self.docker("push", IMAGE, config_dir=pusher)
        self.docker("rmi", IMAGE)
        shutil.rmtree(pusher)

    def _build_sleep(self, image_dir: Path, output: Path) -> bool:
        gcc = _which("gcc")
        if gcc is None:
            return False
        source = image_dir / "sleep.c"
        source.write_text(SLEEP_SOURCE)
        result = subprocess.run(
            [gcc, "-static", "-Os", "-s", "-o", str(output), str(source)],
            capture_output=True,
            env=base_environment(self.home),
        )
        return result.returncode == 0

    # -- using the rig ---------------------------------------------------------------

    def netns_command(self, *command) -> list[str]:
        return [_which("ip"), "netns", "exec", self.namespace, *map(str, command)]

    def docker(
        self, *args, cli=DEBIAN_DOCKER, config_dir=None, check=True, stdin_text=None, timeout=180
    ):
        """Run the docker CLI against the rig's dockerd, with only DOCKER_CONFIG as auth."""
        config_dir = Path(config_dir or self.run_dir / "empty-docker-config")
        config_dir.mkdir(parents=True, exist_ok=True)
        environment = base_environment(
            self.home, DOCKER_HOST=self.docker_host, DOCKER_CONFIG=str(config_dir)
        )
        result = subprocess.run(
            [cli, *map(str, args)],
            env=environment,
            input=stdin_text,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RigError(f"docker {' '.join(map(str, args))} failed: {result.stderr.strip()}")
        return result

    def agent_environment(self, home: Path) -> dict:
        """Return the environment of an ecr-agent run: no host AWS or Docker settings."""
        return base_environment(
            home,
            AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=AWS_SECRET_ACCESS_KEY,
            AWS_CONFIG_FILE=str(home / "aws-config-absent"),
            AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials-absent"),
            PYTHONPATH=str(ROOT),
        )

    def agent_command(self, config: Path, *args, python=None) -> list[str]:
        python = python or sys.executable
        return self.netns_command(python, "-m", "ecr_agent", "--config", config, *args)

    def write_agent_config(self, directory: Path, renewal=None, **docker_settings) -> Path:
        """Write an agent config for the rig's registry under ``directory``; return its path.

        ``docker_settings`` override keys of the [docker] table and ``renewal`` (a dict)
        keys of [renewal], whose defaults renew every 2 s.
        """
        renewal = {
            "min_interval": "2s",
            "jitter": "0s",
            "retry_initial": "1s",
            "retry_max": "5s",
            **(renewal or {}),
        }
        docker = {
            "config_files": [str(directory / "docker-config" / "config.json")],
            "host": self.docker_host,
            "verify_login": True,
            "swarm_services": False,
            **docker_settings,
        }
        sections = {
            "agent": {"state_dir": str(directory / "state")},
            "aws": {"region": REGION, "endpoint_url": MOTO_URL},
            "docker": docker,
            "renewal": renewal,
        }
        lines = [f'[[registry]]\naccount = "{ACCOUNT}"\nregion = "{REGION}"\n']
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
            lines.append("")
        path = directory / "ecr-agent.toml"
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
        return path

    # -- down and status -------------------------------------------------------------

    def down(self, quiet: bool = False) -> None:
        """Stop every rig process, delete the namespace and the rig's run directory."""
        if self.dockerd_responds():
            self.docker("swarm", "leave", "--force", check=False, timeout=60)
            containers = self.docker("ps", "-aq", check=False).stdout.split()
            if containers:
                self.docker("rm", "-f", *containers, check=False, timeout=120)
        self._stop("dockerd", "dockerd", timeout=60)
        self._stop("registry", "docker-registry")
        self._stop("moto", "moto")
        if self._namespace_exists():
            self._kill_namespace_processes()
            self._run(["ip", "netns", "del", self.namespace], check=False)

        link = Path("/etc/netns") / self.namespace
        if link.is_symlink() and Path(os.readlink(link)) == self.netns_etc:
            link.unlink()
        marker = self.directory / "created-etc-netns"
        if marker.exists():
            with contextlib.suppress(OSError):  # another namespace still uses it
                Path("/etc/netns").rmdir()
            marker.unlink()
        self._unmount_leftovers()
        self._keep_logs()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if not quiet:
            print(f"rig {self.namespace} is down; logs in {self.directory / 'last-logs'}")

    def status(self) -> dict:
        state = self._load_state()
        pids = state.get("pids", {})
        return {
            "namespace": self.namespace,
            "namespace_exists": self._namespace_exists(),
            "directory": str(self.directory),
            "processes": {name: _alive(pid) for name, pid in pids.items()},
            "dockerd_responds": self.dockerd_responds(),
            "docker_host": self.docker_host,
            "registry": f"https://{HOST} ({REGISTRY_ADDRESS} in the namespace)",
            "moto": MOTO_URL + " (in the namespace)",
            "setup_seconds": state.get("setup_seconds"),
        }

    def _namespace_exists(self) -> bool:
        return Path("/run/netns", self.namespace).exists()

    def _kill_namespace_processes(self) -> None:
        """Kill whatever still runs in the namespace, with its descendants."""
        result = self._run(["ip", "netns", "pids", self.namespace], check=False)
        for pid in map(int, result.stdout.split()):
            _kill_tree(pid)

    def _unmount_leftovers(self) -> None:
        """Unmount anything below the rig directory left in the host's mount namespace."""
        prefix = str(self.run_dir) + "/"
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)

    def _keep_logs(self) -> None:
        if not self.log_dir.is_dir():
            return
        last_logs = self.directory / "last-logs"
        shutil.rmtree(last_logs, ignore_errors=True)
        shutil.move(str(self.log_dir), str(last_logs))

    # -- processes -------------------------------------------------------------------

    def _start(self, name: str, command: list[str], environment: dict) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            process = subprocess.Popen(
                command,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self._processes[name] = process
        self._save_state()

    def _stop(self, name: str, expected: str, timeout: float = 20) -> None:
        """Stop the process ``name`` by its recorded PID if its command line has ``expected``."""
        process = self._processes.pop(name, None)
        pid = process.pid if process else self._load_state().get("pids", {}).get(name)
        if pid and expected in _command_line(pid):
            _terminate(pid, timeout)
        if process:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        state = self._load_state()
        if name in state.get("pids", {}):
            del state["pids"][name]
            self._state_file.write_text(json.dumps(state, indent=2))

    def _wait(self, name: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self._processes.get(name)
            if process and process.poll() is not None:
                raise RigError(f"{name} exited with {process.returncode}; {self._log_hint(name)}")
            if ready():
                return
            time.sleep(0.2)
        raise RigError(f"{name} not ready after {timeout:g} s; {self._log_hint(name)}")

    def _log_hint(self, name: str) -> str:
        return f"see {name}.log in {self.log_dir} (after teardown: {self.directory / 'last-logs'})"

    def _probe(self, script: str, *args) -> bool:
        command = self.netns_command(sys.executable, "-c", script, *args)
        result = subprocess.run(command, capture_output=True, env=base_environment(self.home))
        return result.returncode == 0

    def _run(self, command, check=True, environment=None, **kwargs):
        command = [str(part) for part in command]
        if not command[0].startswith("/"):
            command[0] = _which(command[0]) or command[0]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment or base_environment(self.home),
            **kwargs,
        )
        if check and result.returncode != 0:
            raise RigError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result


def _cgroup_mounts() -> str:
    """Return the host's cgroup mounts as lines of ``point type options``."""
    lines = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, point, kind, options = line.split()[:4]
            if point.startswith("/sys/fs/cgroup"):
                lines.append(f"{point} {kind} {options}")
    return "\n".join(lines)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Return whether ``pid`` runs and is no zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _terminate(pid: int, timeout: float) -> None:
    """Send SIGTERM, then SIGKILL after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _kill_tree(pid: int) -> None:
    for target in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def demo(python: str) -> int:
    """Show `ecr-agent refresh` making `docker pull` work; always tear the rig down."""
    sys.stdout.reconfigure(line_buffering=True)  # keep order with the agent's stderr
    rig = Rig(Path(tempfile.gettempdir()) / "ecr-agent-demo", "ecragent-demo")
    reason = missing_requirements()
    if reason:
        print(f"demo-pull: stopping at the config file: {reason}")
        return 0

    print(
        f"demo-pull: starting moto, a registry for {HOST} and dockerd in namespace {rig.namespace}"
    )
    try:
        try:
            rig.up()
        except RigError as error:
            print(f"demo-pull: starting the rig failed: {error}")
            return 1
        print(f"demo-pull: rig up in {rig.setup_seconds} s")
        workdir = rig.run_dir / "demo"
        config = rig.write_agent_config(workdir)
        command = rig.agent_command(config, "refresh", python=python)
        print("demo-pull: $ ecr-agent --config", config, "refresh   (inside the namespace)")
        result = subprocess.run(command, env=rig.agent_environment(workdir), text=True)
        if result.returncode != 0:
            print(f"demo-pull: ecr-agent refresh exited with {result.returncode}")
            return 1

        docker_config = workdir / "docker-config"
        entries = json.loads((docker_config / "config.json").read_text()).get("auths", {})
        print(f"demo-pull: {docker_config / 'config.json'} has auths for: {', '.join(entries)}")
        print(f"demo-pull: $ DOCKER_CONFIG={docker_config} docker pull {IMAGE}")
        pull = rig.docker("pull", IMAGE, config_dir=docker_config, check=False)
        print(pull.stdout + pull.stderr, end="")
        if pull.returncode != 0:
            print("demo-pull: docker pull failed")
            return 1
        print("demo-pull: docker pull succeeded with only the file ecr-agent wrote")
        return 0
    finally:
        rig.down()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.rig", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status", "demo"])
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(os.environ.get("ECR_AGENT_E2E_DIR", DEFAULT_DIRECTORY)),
    )
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--python", default=sys.executable, help="interpreter for ecr-agent (demo)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        return demo(args.python)
    rig = Rig(args.directory, args.namespace)
    try:
        if args.command == "up":
            rig.up()
            print(json.dumps(rig.status(), indent=2))
        elif args.command == "down":
            rig.down()
        else:
            print(json.dumps(rig.status(), indent=2))
    except RigUnavailable as error:
        print(f"rig: {error}", file=sys.stderr)
        return 1
    except RigError as error:
        print(f"rig: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
