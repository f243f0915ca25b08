"""The state file that ``ecr-agent status`` reads: per registry, times and errors.

It contains host names, times and error messages, never a credential.
"""

import json
import logging
import os
import tempfile
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

STATE_FILE = "state.json"
TEMP_PREFIX, TEMP_SUFFIX = ".state.", ".tmp"  # temporary files: .state.<random>.tmp
FORMAT_VERSION = 1

log = logging.getLogger(__name__)


@dataclass
class TargetState:
    ok: bool
    at: str
    error: str | None = None
    warning: str | None = None


@dataclass
class RegistryState:
    """The recorded history of one registry. Times are ISO 8601 strings in UTC."""

    host: str
    account: str | None
    region: str | None
    aliases: list[str] = field(default_factory=list)
    requested_at: str | None = None
    expires_at: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    next_renewal: str | None = None
    failures: int = 0
    targets: dict[str, TargetState] = field(default_factory=dict)


def isoformat(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def write_state(directory: Path, registries: dict[str, RegistryState], pid: int, now: datetime):
    """Replace the state file atomically.

    Missing directories are created 0700, parents included, and the file is created 0600.
    """
    _make_directories(directory)
    document = {
        "version": FORMAT_VERSION,
        "pid": pid,
        "updated_at": isoformat(now),
        "registries": {host: asdict(state) for host, state in registries.items()},
    }
    data = json.dumps(document, indent=2, sort_keys=False).encode() + b"\n"

    _remove_leftovers(directory)
    descriptor, temporary = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, directory / STATE_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _make_directories(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each with mode 0700.

    Path.mkdir(parents=True) gives the parents the umask's mode, and a umask of 0 would
    leave them writable by every user, who could then swap the state directory.
    """
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        with suppress(FileExistsError):
            path.mkdir(mode=0o700)


def _remove_leftovers(directory: Path) -> None:
    """Remove temporary state files that a killed process left behind.

    NOTE: a second ecr-agent process writing the same state directory at this moment
    loses its temporary file and fails that one write.
    """
    for leftover in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        try:
            leftover.unlink()
        except OSError as error:
            log.warning("cannot remove leftover %s: %s", leftover, error.strerror or error)


def read_state(directory: Path) -> dict:
    """Return the state document; raise OSError or ValueError if it is missing or broken."""
    with open(directory / STATE_FILE, encoding="utf-8") as stream:
        document = json.load(stream)
    if not isinstance(document, dict) or not isinstance(document.get("registries"), dict):
        raise ValueError(f"{directory / STATE_FILE} is not an ecr-agent state file")
    return document


def load_registries(directory: Path) -> dict[str, RegistryState]:
    """Return the registries of an earlier state file, without their target outcomes.

    Missing, unreadable or foreign files give an empty result: the state is a record for
    ``status``, never needed to renew.
    """
    try:
        document = read_state(directory)
    except (OSError, ValueError):
        return {}

    names = set(RegistryState.__dataclass_fields__) - {"targets"}
    loaded = {}
    for host, entry in document["registries"].items():
        if not isinstance(entry, dict) or entry.get("host") != host:
            continue
        try:
            loaded[host] = RegistryState(**{k: v for k, v in entry.items() if k in names})
        except TypeError:
            continue
    return loaded
