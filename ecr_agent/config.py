"""Configuration: the TOML file, its defaults and its validation."""

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = Path("/etc/ecr-agent/ecr-agent.toml")


@dataclass(frozen=True)
class AgentSettings:
    state_dir: Path = Path("/var/lib/ecr-agent")
    log_level: str = "info"


@dataclass(frozen=True)
class RenewalSettings:
    """Renewal timing; every duration is in seconds."""

    lifetime_fraction: float = 0.5
    min_interval: float = 300.0
    jitter: float = 120.0
    retry_initial: float = 15.0
    retry_max: float = 900.0


@dataclass(frozen=True)
class AwsSource:
    """Where a token comes from: the credential source, region and endpoint."""

    region: str
    profile: str = ""
    role_arn: str = ""
    external_id: str = ""
    role_session_name: str = "ecr-agent"
    endpoint_url: str = ""
    public: bool = False


@dataclass(frozen=True)
class Registry:
    """One configured registry: ``account`` is None for ECR Public."""

    host: str
    account: str | None
    source: AwsSource
    aliases: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        return self.source.public


@dataclass(frozen=True)
class DockerSettings:
    config_files: tuple[Path, ...] = (Path("/root/.docker/config.json"),)
    users: tuple[str, ...] = ()
    host: str = "unix:///var/run/docker.sock"
    verify_login: bool = True
    swarm_services: bool = False


@dataclass(frozen=True)
class RancherSettings:
    """Rancher reporting; ``secret_key`` is already read from its file or credential."""

    url: str
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    secret_key_file: str = ""
    ca_file: str = ""
    create_missing: bool = False


@dataclass(frozen=True)
class Config:
    path: Path
    agent: AgentSettings
    renewal: RenewalSettings
    registries: tuple[Registry, ...]
    docker: DockerSettings
    rancher: RancherSettings | None = None
