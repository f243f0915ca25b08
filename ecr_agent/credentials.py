"""Registry credentials decoded from an ECR authorization token."""

import base64
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Credentials:
    """A registry user name and password with the validity ECR reported for them.

    The password is left out of ``repr`` and ``str`` so that logging or raising with a
    Credentials object never shows it.
    """

    username: str
    password: str = field(repr=False)
    requested_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def docker_auth(self) -> str:
        """Return the ``auth`` value of a Docker config entry: base64 of ``user:password``."""
        raw = f"{self.username}:{self.password}".encode()
        return base64.b64encode(raw).decode("ascii")
