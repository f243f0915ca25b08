"""File operations for Docker config files that stay inside one directory.

Every operation works on an open directory file descriptor and names its entries relative
to it (``dir_fd``), so once the directory is open no later path lookup can be redirected
by a symbolic link. A user's ``~/.docker`` is opened without following links and must
belong to that user. Files in it must be regular files with one link, owned by the user.
Paths the administrator configured may be links and are resolved first, as
``docker login`` does.
"""

import errno
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ecr_agent.errors import DockerConfigError

logger = logging.getLogger(__name__)

# A Docker config file is a few kilobytes, so a larger file is rejected as not one.
MAX_FILE_BYTES = 4 * 1024 * 1024

DIRECTORY_MODE = 0o700
NEW_FILE_MODE = 0o600
TEMP_MARKER = ".ecr-agent-"
FOREIGN_TEMP_AGE = 10.0  # seconds a temporary file of another writer counts as in use

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class Owner:
    """The user whose ``~/.docker`` directory is written, from the password database."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class ExistingFile:
    """The content and status of a file as it was read."""

    data: bytes
    status: os.stat_result


def temp_name(name: str) -> str:
    """Return a new temporary file name for replacing ``name`` in the same directory."""
    return f".{name}{TEMP_MARKER}{secrets.token_hex(8)}.tmp"


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}{re.escape(TEMP_MARKER)}[0-9a-f]+\.tmp")


def open_admin_directory(path: Path) -> tuple[int, str]:
    """Open the directory of a configured config file and return its fd and the file name.

    Symbolic links in ``path`` are followed to the real file, also when the link dangles,
    so the real file is replaced and the link kept. Missing parent directories are created
    with mode 0700, as ``docker login`` creates them.
    """
    real = Path(os.path.realpath(path))
    if real != Path(os.path.abspath(path)):
        logger.debug("Docker config %s resolves to %s", path, real)

    try:
        _make_directories(real.parent)
        return os.open(real.parent, _DIR_FLAGS), real.name
    except OSError as error:
        cause = f"cannot open directory {real.parent}: {error.strerror}"
        raise DockerConfigError(path, cause) from error


def _make_directories(directory: Path) -> None:
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent

    for parent in reversed(missing):
        with suppress(FileExistsError):
            os.mkdir(parent, DIRECTORY_MODE)
            logger.info("created directory %s with mode 0700", parent)


def open_user_directory(owner: Owner, path: str) -> int:
    """Open ``~owner/.docker`` without following links and return its fd.

    The home directory comes from the password database and is followed like any
    administrator's path. ``.docker`` is created 0700 and owned by the user when missing.
    A ``.docker`` that is a link, not a directory, or owned by anyone else is rejected.
    """
    try:
        home_fd = os.open(owner.home, _DIR_FLAGS)
    except FileNotFoundError as error:
        cause = f"home directory {owner.home} of user {owner.name} does not exist"
        raise DockerConfigError(path, cause) from error
    except OSError as error:
        cause = f"cannot open home directory {owner.home} of user {owner.name}: {error.strerror}"
        raise DockerConfigError(path, cause) from error

    try:
        return _open_docker_directory(home_fd, owner, path)
    finally:
        os.close(home_fd)


def _open_docker_directory(home_fd: int, owner: Owner, path: str) -> int:
    directory = os.path.join(owner.home, ".docker")
    flags = _DIR_FLAGS | os.O_NOFOLLOW
    try:
        fd = os.open(".docker", flags, dir_fd=home_fd)
    except FileNotFoundError:
        fd = _create_docker_directory(home_fd, owner, directory, path)
    except OSError as error:
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            cause = f"cannot open {directory} of user {owner.name}: {error.strerror}"
            raise DockerConfigError(path, cause) from error
        kind = _describe_entry(home_fd, ".docker") or "not a directory"
        cause = (
            f"{directory} of user {owner.name} is {kind}; ecr-agent writes only into a real "
            f"directory owned by {owner.name}, so replace it with one (mkdir -m 0700)"
        )
        raise DockerConfigError(path, cause) from error

    status = os.fstat(fd)
    if status.st_uid != owner.uid:
        os.close(fd)
        cause = (
            f"{directory} is owned by uid {status.st_uid}, not by user {owner.name} "
            f"(uid {owner.uid}); run: chown {owner.name} {directory}"
        )
        raise DockerConfigError(path, cause)
    return fd


def _create_docker_directory(home_fd: int, owner: Owner, directory: str, path: str) -> int:
    try:
        with suppress(FileExistsError):
            os.mkdir(".docker", DIRECTORY_MODE, dir_fd=home_fd)
        fd = os.open(".docker", _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=home_fd)
    except OSError as error:
        cause = f"cannot create {directory} for user {owner.name}: {error.strerror}"
        raise DockerConfigError(path, cause) from error

    # Only a directory owned by this process was created by it and is handed over. A
    # directory the user put in its place meanwhile is checked by the caller instead.
    if os.fstat(fd).st_uid == os.geteuid():
        if owner.uid != os.geteuid():
            os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, DIRECTORY_MODE)
        logger.info("created %s for user %s with mode 0700", directory, owner.name)
    return fd


def _describe_entry(dir_fd: int, name: str) -> str | None:
    try:
        status = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    return _describe_kind(status.st_mode)


def _describe_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    ]
    for test, kind in kinds:
        if test(mode):
            return kind
    return "not a regular file"


def read_existing(dir_fd: int, name: str, path: str, owner: Owner | None) -> ExistingFile | None:
    """Read file ``name`` in ``dir_fd``, or return None when it does not exist.

    Anything but a regular file of at most MAX_FILE_BYTES is rejected from its lstat
    status before it is opened, so a FIFO cannot block and a device is never read. The
    open uses O_NONBLOCK and O_NOFOLLOW and must find the same inode. With an ``owner``,
    the file must also have one link and belong to that user.
    """
    try:
        status = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DockerConfigError(path, f"cannot read the file: {error.strerror}") from error

    _check_status(status, path, owner)
    try:
        return _read_checked(dir_fd, name, status, path)
    except OSError as error:
        raise DockerConfigError(path, f"cannot read the file: {error.strerror}") from error


def _check_status(status: os.stat_result, path: str, owner: Owner | None) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = _describe_kind(status.st_mode)
        cause = f"the file is {kind}, but a Docker config must be a regular file"
        if owner is not None:
            cause += f"; user {owner.name} must replace it with one"
        raise DockerConfigError(path, cause)

    if status.st_size > MAX_FILE_BYTES:
        cause = f"the file has {status.st_size} bytes, more than the {MAX_FILE_BYTES} accepted"
        raise DockerConfigError(path, cause)

    if owner is None:
        return
    if status.st_nlink > 1:
        cause = (
            f"the file has {status.st_nlink} hard links; ecr-agent replaces only a file of "
            f"user {owner.name} with a single link, so copy it to a new file and move that "
            "over it"
        )
        raise DockerConfigError(path, cause)
    if status.st_uid != owner.uid:
        cause = (
            f"the file is owned by uid {status.st_uid}, not by user {owner.name} "
            f"(uid {owner.uid}); run: chown {owner.name} {path}"
        )
        raise DockerConfigError(path, cause)


def _read_checked(dir_fd: int, name: str, status: os.stat_result, path: str) -> ExistingFile:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (status.st_dev, status.st_ino):
            raise DockerConfigError(path, "the file was replaced while being read; try again")
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)

    if size > MAX_FILE_BYTES:
        cause = f"the file grew past the {MAX_FILE_BYTES} bytes accepted while being read"
        raise DockerConfigError(path, cause)
    return ExistingFile(b"".join(chunks), opened)


def remove_leftovers(dir_fd: int, name: str, path: str) -> None:
    """Remove temporary files that an earlier, interrupted write of ``name`` left behind.

    Only entries named like ``temp_name(name)`` are removed, and unlinking never follows
    a link. A failure is logged and does not stop the write.
    """
    pattern = _temp_pattern(name)
    try:
        entries = os.listdir(dir_fd)
    except OSError as error:
        logger.warning("cannot list the directory of %s: %s", path, error.strerror)
        return

    for entry in entries:
        if not pattern.fullmatch(entry):
            continue
        try:
            if stat.S_ISDIR(os.stat(entry, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                continue
            os.unlink(entry, dir_fd=dir_fd)
            logger.info("removed leftover temporary file %s next to %s", entry, path)
        except OSError as error:
            logger.warning("cannot remove leftover %s next to %s: %s", entry, path, error.strerror)


def other_writer_active(dir_fd: int, name: str, now: float | None = None) -> bool:
    """Return whether another program is writing ``name`` now, as the Docker CLI does.

    The Docker CLI's save (docker/cli ``ConfigFile.Save``) writes a temporary file named
    ``name`` plus random digits next to the file and renames it over the file. Such a
    file younger than FOREIGN_TEMP_AGE seconds means that a save is under way; an older
    one is a leftover of a killed ``docker`` and is ignored.
    """
    pattern = re.compile(rf"{re.escape(name)}[0-9]+")
    now = time.time() if now is None else now
    try:
        entries = os.listdir(dir_fd)
    except OSError:
        return False
    for entry in entries:
        if not pattern.fullmatch(entry):
            continue
        try:
            status = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(status.st_mode) and now - status.st_mtime < FOREIGN_TEMP_AGE:
            return True
    return False


class FileChanged(Exception):
    """The file was replaced or modified after it was read, so it must be read again."""


def is_unchanged(dir_fd: int, name: str, existing: ExistingFile | None) -> bool:
    """Return whether ``name`` is still the file read as ``existing``, or still missing.

    The inode, size, modification and change times must all match, so both a file
    renamed into place and one rewritten in place count as changed.
    """
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return existing is None
    if existing is None:
        return False
    then = existing.status
    fields = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    return all(getattr(now, field) == getattr(then, field) for field in fields)


def replace_file(
    dir_fd: int,
    name: str,
    data: bytes,
    mode: int,
    uid: int,
    gid: int,
    unchanged: Callable[[], bool] | None = None,
) -> None:
    """Replace file ``name`` in ``dir_fd`` with ``data`` atomically.

    The temporary file is created 0600 with O_EXCL and O_NOFOLLOW and written. It then
    gets ``uid``, ``gid`` (-1 keeps this process's) and ``mode``, is synced, and is renamed
    over ``name``. The directory is synced last. On any failure the temporary file is
    removed and the old file stays as it was.

    ``unchanged`` is called right before the rename. When it returns False, another
    program has written the file since it was read, and FileChanged is raised instead of
    overwriting that program's change.
    """
    temp = temp_name(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, NEW_FILE_MODE, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, data)
            if (uid, gid) != (-1, -1):
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        # NOTE: a program that replaces the file between this check and the rename still
        # loses its change. The Docker CLI takes no lock, so nothing closes that window.
        if unchanged is not None and not unchanged():
            raise FileChanged(name)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise

    os.fsync(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
