"""The interface shared by every place credentials are published to."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ecr_agent.credentials import Credentials


@dataclass(frozen=True)
class Outcome:
    """The result of publishing to one target.

    ``host`` is None when the outcome covers every host of the batch (one config file
    contains them all). ``error`` is None on success; ``warning`` marks a write that worked
    but will not be used as intended (a credential helper shadows the entry).
    Messages name files, hosts and resources, never a secret.
    """

    target: str
    host: str | None = None
    error: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Target(Protocol):
    """A place that receives renewed credentials: config files, the daemon, Rancher."""

    name: str

    def publish(self, hosts: Mapping[str, Credentials]) -> list[Outcome]:
        """Publish credentials keyed by bare registry host; never raise for one host."""
        ...

    def close(self) -> None: ...
