"""The benchmark rig: tests/e2e/rig.py plus the ECR API over TLS on its AWS host names.

tests.e2e.rig.Rig brings up the network namespace with moto (plain HTTP on
127.0.0.1:5000), Debian's docker-registry on the ECR registry host over TLS and a
private dockerd. This module adds what a client that cannot change its endpoint needs
(docker-credential-ecr-login): ``api.ecr.<region>.amazonaws.com`` for every benchmark
region in the namespace's hosts file, pointing at 127.0.0.2, where benchmarks/emulator.py
serves HTTPS with a certificate from the rig's CA. Every client in the benchmarks uses
that listener, so all of them pay for TLS as they would against ECR.

The registry's htpasswd is replaced by one that accepts the emulator's rotating
passwords and uses bcrypt cost 4. The e2e rig uses cost 10, which costs the registry
about 0.1 s of CPU per login on this kind of machine; ECR's own registry does not
spend that, and it would weigh on every alternative alike.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.emulator import registry_password
from tests.e2e import rig as e2e_rig

API_ADDRESS = "127.0.0.2"
CONTROL_PORT = 5001
REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
    "eu-south-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-southeast-1", "ap-southeast-2", "sa-east-1", "me-south-1", "af-south-1",
)  # fmt: skip
BCRYPT_COST = 4

HTPASSWD_SCRIPT = """\
import sys
import bcrypt
password = sys.stdin.read().encode()
print(bcrypt.hashpw(password, bcrypt.gensalt(int(sys.argv[1]))).decode())
"""


def api_host(region: str) -> str:
    return f"api.ecr.{region}.amazonaws.com"


def api_url(region: str) -> str:
    return f"https://{api_host(region)}"


def control(path: str, settings: dict | None = None, port: int = CONTROL_PORT) -> dict:
    """Call the emulator's control listener on 127.0.0.1 (inside the namespace with a rig)."""
    data = json.dumps(settings or {}).encode()
    url = f"http://127.0.0.1:{port}{path}"
    method = "GET" if path == "/counts" else "POST"
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


class Testbed:
    """The e2e rig in its own directory and namespace, plus the TLS emulator."""

    def __init__(self, directory: Path, namespace: str, python: str):
        self.rig = e2e_rig.Rig(directory, namespace)
        self.python = python  # interpreter with moto, bcrypt and this tree on its path
        self.pid_file = Path(directory) / "emulator.pid"

    @property
    def ca_file(self) -> Path:
        return self.rig.pki / "ca.crt"

    def up(self) -> None:
        self.down(quiet=True)
        self.rig.up()
        try:
            self._make_api_certificate()
            self._add_api_hosts()
            self._set_registry_password()
            self._start_emulator()
        except BaseException:
            self.down(quiet=True)
            raise

    def down(self, quiet: bool = False) -> None:
        self._stop_emulator()
        self.rig.down(quiet=quiet)

    def _make_api_certificate(self) -> None:
        pki = self.rig.pki
        names = ",".join(f"DNS:{api_host(region)}" for region in REGIONS)
        extensions = pki / "api.ext"
        extensions.write_text(
            f"subjectAltName={names},IP:{API_ADDRESS}\n"
            "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        )
        key, request, cert = (pki / f"api.{kind}" for kind in ("key", "csr", "crt"))
        subject = f"/CN={api_host(REGIONS[0])}"
        new_key = ["-newkey", "rsa:2048", "-nodes", "-keyout", key]
        self._run(["openssl", "req", *new_key, "-subj", subject, "-out", request])
        signing = ["-CA", pki / "ca.crt", "-CAkey", pki / "ca.key", "-CAcreateserial"]
        output = ["-extfile", extensions, "-days", "2", "-out", cert]
        self._run(["openssl", "x509", "-req", "-in", request, *signing, *output])

    def _add_api_hosts(self) -> None:
        hosts = self.rig.netns_etc / "hosts"
        names = " ".join(api_host(region) for region in REGIONS)
        with hosts.open("a") as stream:
            stream.write(f"{API_ADDRESS} {names}\n")

    def _set_registry_password(self) -> None:
        """Make the registry accept every password the emulator hands out."""
        result = subprocess.run(
            [self.python, "-c", HTPASSWD_SCRIPT, str(BCRYPT_COST)],
            input=registry_password(self.rig.password),
            capture_output=True,
            text=True,
            check=True,
            env=e2e_rig.base_environment(self.rig.home),
        )
        htpasswd = self.rig.registry_dir / "htpasswd"
        temporary = htpasswd.with_suffix(".bench")
        temporary.write_text(f"AWS:{result.stdout.strip()}\n")
        temporary.replace(htpasswd)
        # docker-registry reads the file again when its modification time changes.
        time.sleep(1.1)

    def _start_emulator(self) -> None:
        pki = self.rig.pki
        command = self.rig.netns_command(
            self.python, "-m", "benchmarks.emulator",
            "--upstream", e2e_rig.MOTO_URL, "--address", API_ADDRESS,
            "--cert", pki / "api.crt", "--key", pki / "api.key",
            "--control", CONTROL_PORT,
        )  # fmt: skip
        environment = e2e_rig.base_environment(self.rig.home, PYTHONPATH=str(e2e_rig.ROOT))
        log = open(self.rig.log_dir / "emulator.log", "ab")  # noqa: SIM115 - the child keeps it
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
        self.pid_file.write_text(str(process.pid))

        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTROL_PORT}/')"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise e2e_rig.RigError(f"the emulator exited; see {self.rig.log_dir}/emulator.log")
            check = subprocess.run(
                self.rig.netns_command(sys.executable, "-c", probe), capture_output=True
            )
            if check.returncode == 0:
                return
            time.sleep(0.2)
        raise e2e_rig.RigError("the emulator did not respond within 30 s")

    def _stop_emulator(self) -> None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        command_line = Path(f"/proc/{pid}/cmdline")
        try:
            running = b"benchmarks.emulator" in command_line.read_bytes()
        except OSError:
            running = False
        if running:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and command_line.exists():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def _run(self, command) -> None:
        command = [str(part) for part in command]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise e2e_rig.RigError(f"{' '.join(command)} failed: {result.stderr.strip()}")
