"""Environments, agent configurations and commands of the benchmark driver.

With the rig, every command runs inside the benchmark's network namespace, where the ECR
API host names resolve to the TLS emulator and the registry host to the rig's registry.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.testbed import CONTROL_PORT, api_url
from tests.e2e.rig import ACCOUNT, IMAGE, REGION, ROOT

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AWS_ACCESS_KEY_ID = "AKIASTANDINKEY000001"
AWS_SECRET_ACCESS_KEY = "STAND-IN-AWS-SECRET-KEY-do-not-log"
FLOOR = ROOT / "benchmarks" / "floor.py"

# The renewal settings of ecr-agent.toml, in seconds.
DEFAULT_RENEWAL = {
    "lifetime_fraction": 0.5,
    "min_interval": 300.0,
    "jitter": 120.0,
    "retry_initial": 15.0,
    "retry_max": 900.0,
}


@dataclass
class Scenario:
    """The paths and programs of one benchmark run (the plan main.py hands over)."""

    work: Path
    ca_file: str  # the CA of the emulator's certificate; empty for plain HTTP
    docker_host: str | None  # the rig's dockerd; None runs the figures that need only moto
    pythons: dict[str, str]  # dependency set name -> interpreter
    aws: str
    api_base: str = ""  # one endpoint for every region instead of api.ecr.REGION...
    control_port: int = CONTROL_PORT
    docker: str = "/usr/bin/docker"
    helper: str = "/usr/bin/docker-credential-ecr-login"
    counts: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Scenario":
        document = json.loads(Path(path).read_text())
        document["work"] = Path(document["work"])
        return cls(**document)

    def directory(self, *parts: str) -> Path:
        path = self.work.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- environments ----------------------------------------------------------------

    def base_env(self, **extra) -> dict:
        """Return an explicit environment: stand-in AWS keys, the CA, no host settings."""
        home = self.directory("home")
        env = {
            "PATH": SYSTEM_PATH,
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
            "AWS_CONFIG_FILE": str(home / "aws-config-absent"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials-absent"),
        }
        if self.ca_file:
            env["AWS_CA_BUNDLE"] = self.ca_file
        env.update({key: str(value) for key, value in extra.items()})
        return env

    def agent_env(self, **extra) -> dict:
        return self.base_env(PYTHONPATH=ROOT, **extra)

    def docker_env(self, config_dir: Path, **extra) -> dict:
        return self.base_env(DOCKER_CONFIG=config_dir, DOCKER_HOST=self.docker_host, **extra)

    @property
    def with_docker(self) -> bool:
        return self.docker_host is not None

    def endpoint(self, region: str) -> str:
        return self.api_base or api_url(region)

    # -- commands --------------------------------------------------------------------

    def agent_command(self, dependency_set: str, config: Path, *args) -> list[str]:
        python = self.pythons[dependency_set]
        return [python, "-m", "ecr_agent", "--config", str(config), *args]

    def floor_command(self, dependency_set: str, output: Path, sleep=False) -> list[str]:
        python = self.pythons[dependency_set]
        command = [python, str(FLOOR), "--region", REGION, "--endpoint-url", self.endpoint(REGION)]
        command += ["--account", ACCOUNT, "--output", str(output)]
        return command + (["--sleep"] if sleep else [])

    def diy_pipeline(self, account: str = ACCOUNT) -> str:
        """Return the cron job's shell pipeline: get-login-password into docker login."""
        host = f"{account}.dkr.ecr.{REGION}.amazonaws.com"
        return (
            f"{self.aws} ecr get-login-password --region {REGION} "
            f"--endpoint-url {self.endpoint(REGION)} "
            f"| docker login --username AWS --password-stdin {host}"
        )

    def diy_command(self) -> list[str]:
        return ["/bin/sh", "-c", self.diy_pipeline()]

    def pull_command(self) -> list[str]:
        return [self.docker, "pull", IMAGE]

    # -- agent configurations --------------------------------------------------------

    def agent_config(
        self,
        directory: Path,
        registries=((ACCOUNT, REGION),),
        verify_login: bool = True,
        log_level: str = "info",
        renewal: dict | None = None,
    ) -> Path:
        """Write an ecr-agent configuration in ``directory``; return its path.

        Each registry gets the explicit endpoint of its region, which resolves to the
        emulator inside the namespace.
        """
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            "[agent]",
            f"state_dir = {json.dumps(str(directory / 'state'))}",
            f"log_level = {json.dumps(log_level)}",
            "",
            "[aws]",
            f'region = "{REGION}"',
            f"endpoint_url = {json.dumps(self.endpoint(REGION))}",
            "",
        ]
        if renewal:
            lines.append("[renewal]")
            lines += [f"{key} = {_toml_duration(key, value)}" for key, value in renewal.items()]
            lines.append("")
        for account, region in registries:
            lines += [
                "[[registry]]",
                f'account = "{account}"',
                f'region = "{region}"',
                f"endpoint_url = {json.dumps(self.endpoint(region))}",
                "",
            ]
        lines += [
            "[docker]",
            f"config_files = {json.dumps([str(directory / 'docker' / 'config.json')])}",
            f"verify_login = {'true' if verify_login else 'false'}",
            "swarm_services = false",
        ]
        if self.docker_host:
            lines.append(f"host = {json.dumps(self.docker_host)}")
        lines.append("")
        path = directory / "ecr-agent.toml"
        path.write_text("\n".join(lines))
        return path


def _toml_duration(key: str, value: float) -> str:
    if key == "lifetime_fraction":
        return repr(float(value))
    return json.dumps(f"{value * 1000:.3f}ms")


def registry_host(account: str, region: str = REGION) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com"
