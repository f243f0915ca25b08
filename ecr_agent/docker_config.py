"""The Docker client config file target: ``auths`` entries in ``config.json`` files.

How the entry for a host is written follows the Docker CLI (docker/cli,
``cli/config/configfile/file.go`` and ``cli/config/credentials/``):

- The CLI picks the store for a host with ``getConfiguredCredentialStore``:
  ``credHelpers[host]`` when that key exists, even with an empty value (which selects the
  file itself), otherwise ``credsStore``. The lookup is by exact host name.
- When a helper is selected, ``docker login`` runs ``docker-credential-<name> store`` with
  ``{"ServerURL", "Username", "Secret"}`` on stdin, then saves the host's ``auths`` entry
  with user and password blanked, which leaves ``{}``. This target does the same, running
  the helper as the file's user for a user's config, so no password is kept in the file.
- A helper may be unable to store: ``ecr-login`` never can, and a helper may be missing,
  fail or time out. Then the password goes into ``auths`` as usual and ``credsStore`` and
  ``credHelpers`` stay as they are. The Outcome carries a warning that Docker will not use
  that entry.
- Without a helper, the CLI looks for the exact host key first and then for any key whose
  ``ConvertToHostname`` (scheme and path removed) is the host, such as
  ``https://HOST/``. The bare host key is written and those URL keys are removed, so a
  stale password under a URL key cannot be picked up.
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ecr_agent import safe_files
from ecr_agent.config import DockerSettings
from ecr_agent.credentials import Credentials
from ecr_agent.errors import DockerConfigError
from ecr_agent.safe_files import Owner
from ecr_agent.targets import Outcome

logger = logging.getLogger(__name__)

HELPER_TIMEOUT = 30.0  # seconds for the ``docker-credential-<name> store`` calls of a publish
HELPER_OUTPUT_CHARS = 200  # helper output quoted in a warning, after redaction
LOCK_WAIT = 10.0  # seconds to wait for another ecr-agent writing the same directory
WRITE_ATTEMPTS = 5  # merges of one file before giving up on a file that keeps changing
CHANGE_PAUSE = 0.02  # seconds, times the attempt number, to wait after a change

# docker-credential-ecr-login fetches credentials from ECR itself. Its ``store`` command
# prints "not implemented" and exits 1 (checked with amazon-ecr-credential-helper 0.6.4).
STORE_UNSUPPORTED = {"ecr-login": "it fetches credentials from ECR itself and cannot store"}


class DockerConfigTarget:
    """Writes registry credentials into the configured Docker client config files.

    The files are every path in ``settings.config_files`` and, for each user in
    ``settings.users``, ``~USER/.docker/config.json`` owned by that user.
    """

    name = "docker config"

    def __init__(
        self,
        settings: DockerSettings,
        pwd_lookup: Callable[[str], pwd.struct_passwd] = pwd.getpwnam,
        helper_timeout: float = HELPER_TIMEOUT,
    ):
        self.settings = settings
        self.pwd_lookup = pwd_lookup
        self.helper_timeout = helper_timeout
        self._helper_deadline = time.monotonic() + helper_timeout

    def publish(self, hosts: Mapping[str, Credentials]) -> list[Outcome]:
        """Write ``hosts`` into every file and return one Outcome per file.

        All credential helper calls of one publish share ``helper_timeout``, so a hung
        helper delays the renewal loop, and its watchdog ping, once and not once per host
        and file.
        """
        self._helper_deadline = time.monotonic() + self.helper_timeout
        outcomes = []
        for path in self.settings.config_files:
            outcomes.append(self._publish_admin_file(Path(path), hosts))
        for user in self.settings.users:
            outcomes.append(self._publish_user_file(user, hosts))
        return outcomes

    def close(self) -> None:
        pass

    def _publish_admin_file(self, path: Path, hosts: Mapping[str, Credentials]) -> Outcome:
        def write() -> list[str]:
            dir_fd, name = safe_files.open_admin_directory(path)
            try:
                return self._update(dir_fd, name, str(path), None, hosts)
            finally:
                os.close(dir_fd)

        return self._run(str(path), write)

    def _publish_user_file(self, user: str, hosts: Mapping[str, Credentials]) -> Outcome:
        try:
            owner = self._lookup_owner(user)
        except DockerConfigError as error:
            return self._failed(error.path, str(error))
        path = os.path.join(owner.home, ".docker", "config.json")

        def write() -> list[str]:
            dir_fd = safe_files.open_user_directory(owner, path)
            try:
                return self._update(dir_fd, "config.json", path, owner, hosts)
            finally:
                os.close(dir_fd)

        return self._run(path, write)

    def _lookup_owner(self, user: str) -> Owner:
        path = f"~{user}/.docker/config.json"
        try:
            entry = self.pwd_lookup(user)
        except KeyError as error:
            cause = f"user {user} does not exist; create it or remove it from [docker] users"
            raise DockerConfigError(path, cause) from error
        if not os.path.isabs(entry.pw_dir):
            cause = f"user {user} has no absolute home directory (pw_dir is {entry.pw_dir!r})"
            raise DockerConfigError(path, cause)
        return Owner(user, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def _run(self, path: str, write: Callable[[], list[str]]) -> Outcome:
        try:
            warnings = write()
        except DockerConfigError as error:
            return self._failed(path, str(error))
        except OSError as error:
            cause = f"writing the file failed: {error.strerror}"
            if error.errno == errno.EROFS:
                # The shipped unit makes everything but /root/.docker and /home read-only.
                cause += (
                    "; under systemd, allow the directory with ReadWritePaths= in a drop-in "
                    "(systemctl edit ecr-agent)"
                )
            return self._failed(path, str(DockerConfigError(path, cause)))
        except Exception as error:
            logger.debug("unexpected failure writing %s", path, exc_info=True)
            cause = f"writing the file failed: {type(error).__name__}: {error}"
            return self._failed(path, str(DockerConfigError(path, cause)))

        target = f"docker config {path}"
        return Outcome(target, warning="; ".join(warnings) if warnings else None)

    @staticmethod
    def _failed(path: str, message: str) -> Outcome:
        logger.error("%s", message)
        return Outcome(f"docker config {path}", error=message)

    def _update(
        self,
        dir_fd: int,
        name: str,
        path: str,
        owner: Owner | None,
        hosts: Mapping[str, Credentials],
    ) -> list[str]:
        """Merge ``hosts`` into the file, again from the start if it changes meanwhile.

        Another program (``docker login``) may replace the file between this read and
        the rename; writing anyway would drop that program's change. Two ecr-agent
        processes (the service and a manual refresh) also exclude each other with a lock
        on the directory; the Docker CLI takes no lock, so it is not held back by it.
        """
        with _directory_lock(dir_fd, path):
            return self._update_retrying(dir_fd, name, path, owner, hosts)

    def _update_retrying(self, dir_fd, name, path, owner, hosts) -> list[str]:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return self._update_once(dir_fd, name, path, owner, hosts)
            except safe_files.FileChanged:
                logger.info("Docker config %s changed while it was written; merging again", path)
                time.sleep(CHANGE_PAUSE * attempt)  # lets the other program finish its save
        cause = (
            f"another program rewrote the file {WRITE_ATTEMPTS} times while ecr-agent wrote "
            "it, so it was left as that program wrote it; the next renewal tries again"
        )
        raise DockerConfigError(path, cause)

    def _update_once(
        self,
        dir_fd: int,
        name: str,
        path: str,
        owner: Owner | None,
        hosts: Mapping[str, Credentials],
    ) -> list[str]:
        existing = safe_files.read_existing(dir_fd, name, path, owner)
        document = parse_config(existing.data if existing else b"", path)

        entries = {}
        warnings = []
        for host, credentials in hosts.items():
            helper = configured_helper(document, host)
            problem = None
            if helper is not None:
                problem = self._store_in_helper(helper, host, credentials, path, owner)
            if helper is not None and problem is None:
                entries[host] = {}
            else:
                entries[host] = {"auth": credentials.docker_auth()}
            if problem is not None:
                warning = f"Docker will not use the auths entry for {host} in {path}: {problem}"
                logger.warning("%s", warning)
                warnings.append(warning)

        set_auth_entries(document, entries)
        data = render_config(document)
        safe_files.remove_leftovers(dir_fd, name, path)

        if existing is not None and existing.data == data:
            logger.debug("Docker config %s already contains these entries, not rewritten", path)
            return warnings
        self._replace(dir_fd, name, data, existing, owner)
        logger.info("wrote %s to Docker config %s", ", ".join(sorted(entries)), path)
        return warnings

    @staticmethod
    def _replace(
        dir_fd: int,
        name: str,
        data: bytes,
        existing: safe_files.ExistingFile | None,
        owner: Owner | None,
    ) -> None:
        if existing is not None:
            status = existing.status
            mode, uid, gid = stat.S_IMODE(status.st_mode), status.st_uid, status.st_gid
        elif owner is not None:
            mode, uid, gid = safe_files.NEW_FILE_MODE, owner.uid, owner.gid
        else:
            mode, uid, gid = safe_files.NEW_FILE_MODE, -1, -1

        def unchanged() -> bool:
            # The listing comes first, so that only the stat and the rename remain
            # between the last check and the write.
            if safe_files.other_writer_active(dir_fd, name):
                return False
            return safe_files.is_unchanged(dir_fd, name, existing)

        safe_files.replace_file(dir_fd, name, data, mode, uid, gid, unchanged)

    def _store_in_helper(
        self, helper: str, host: str, credentials: Credentials, path: str, owner: Owner | None
    ) -> str | None:
        """Store ``credentials`` through ``docker-credential-<helper>``.

        Returns None when the helper stored them, otherwise why it could not. For a user's
        file the helper runs as that user with the user's HOME, as ``docker login`` run by
        that user would.
        """
        if helper in STORE_UNSUPPORTED:
            return f"the credential helper {helper} is configured, but {STORE_UNSUPPORTED[helper]}"
        if "/" in helper:
            return f"the credential helper name {helper!r} is invalid"

        program_name = f"docker-credential-{helper}"
        search_path = os.environ.get("PATH", os.defpath)
        program = shutil.which(program_name, path=search_path)
        if program is None:
            return f"{program_name} is configured but was not found on PATH ({search_path})"

        payload = {"ServerURL": host, "Username": credentials.username}
        payload["Secret"] = credentials.password
        problem = self._run_helper(program, program_name, json.dumps(payload), owner, search_path)
        if problem is not None:
            return redact(problem, credentials)
        logger.info("stored credentials for %s with %s for %s", host, program_name, path)
        return None

    def _run_helper(
        self, program: str, program_name: str, stdin: str, owner: Owner | None, search_path: str
    ) -> str | None:
        options = {}
        # NOTE: switching to the user needs CAP_SETUID and CAP_SETGID. Without them the
        # helper fails to start and the caller writes the entry to ``auths`` with a warning.
        if owner is not None and owner.uid != os.geteuid():
            groups = os.getgrouplist(owner.name, owner.gid)
            env = {"HOME": owner.home, "USER": owner.name, "LOGNAME": owner.name}
            env["PATH"] = search_path
            options = {"user": owner.uid, "group": owner.gid, "extra_groups": groups}
            options.update(env=env, cwd="/")

        remaining = self._helper_deadline - time.monotonic()
        if remaining <= 0:
            return (
                f"{program_name} store was not run, because credential helpers already took "
                f"the {self.helper_timeout:g} s one renewal allows them"
            )

        try:
            process = subprocess.Popen(
                [program, "store"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                **options,
            )
        except OSError as error:
            return f"{program_name} could not be started: {error.strerror}"

        with process:
            try:
                stdout, stderr = process.communicate(stdin.encode(), remaining)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                return f"{program_name} store timed out after {remaining:.1f} s"

        if process.returncode != 0:
            output = (stdout or stderr).decode(errors="replace").strip()
            first_line = output.splitlines()[0] if output else "no output"
            return (
                f"{program_name} store failed with exit status {process.returncode}: "
                f"{first_line[:HELPER_OUTPUT_CHARS]}"
            )
        return None


def redact(text: str, credentials: Credentials) -> str:
    """Return ``text`` with the password and the ``auth`` value of ``credentials`` masked."""
    for secret in (credentials.docker_auth(), credentials.password):
        text = text.replace(secret, "***")
    return text


def parse_config(data: bytes, path: str) -> dict:
    """Parse a Docker config file; an empty file counts as ``{}``, as the Docker CLI reads it.

    Raises DockerConfigError for anything the Docker CLI could not load either: invalid
    JSON, a top level that is not an object, or ``auths``, ``credHelpers`` or
    ``credsStore`` of the wrong type. ``"auths": null`` counts as no entries, as in Go.
    """
    if not data.strip():
        return {}
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DockerConfigError(path, f"the file is not UTF-8 text: {error.reason}") from error
    except json.JSONDecodeError as error:
        cause = f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        raise DockerConfigError(path, cause) from error

    if not isinstance(document, dict):
        cause = f"the file holds {json_type(document)}, but Docker expects a JSON object"
        raise DockerConfigError(path, cause)
    _check_type(document, "auths", dict, path)
    _check_type(document, "credHelpers", dict, path)
    _check_type(document, "credsStore", str, path)
    for host, helper in (document.get("credHelpers") or {}).items():
        if not isinstance(helper, str):
            cause = f"credHelpers[{host!r}] is {json_type(helper)}, but Docker expects a string"
            raise DockerConfigError(path, cause)
    return document


def _check_type(document: dict, key: str, expected: type, path: str) -> None:
    value = document.get(key)
    if value is not None and not isinstance(value, expected):
        wanted = json_type(expected())
        cause = f"{key} is {json_type(value)}, but Docker expects {wanted}"
        raise DockerConfigError(path, cause)


def json_type(value: object) -> str:
    """Name the JSON type of a parsed value with its article: "an object", "null"."""
    if value is None:
        return "null"
    names = [(bool, "a boolean"), (dict, "an object"), (list, "an array"), (str, "a string")]
    for python_type, name in names:
        if isinstance(value, python_type):
            return name
    return "a number"


def configured_helper(document: dict, host: str) -> str | None:
    """Return the credential helper Docker uses for ``host``, or None for the file itself."""
    helpers = document.get("credHelpers") or {}
    if host in helpers:
        return helpers[host] or None
    return document.get("credsStore") or None


def convert_to_hostname(key: str) -> str:
    """Return the host of an ``auths`` key as the Docker CLI's ``ConvertToHostname`` does."""
    if "://" in key:
        parts = urlsplit(key)
        if parts.hostname:
            return parts.netloc.rpartition("@")[2]
    return key.partition("/")[0]


def set_auth_entries(document: dict, entries: Mapping[str, dict]) -> None:
    """Set ``auths[host]`` for each entry in place and drop URL keys for the same hosts.

    An entry takes the position of the first key that named its host, so every other key
    keeps its order. Hosts without such a key are appended.
    """
    old_auths = document.get("auths") or {}
    auths = {}
    for key, value in old_auths.items():
        host = convert_to_hostname(key)
        if host not in entries:
            auths[key] = value
        elif host not in auths:
            auths[host] = entries[host]
    for host, entry in entries.items():
        auths.setdefault(host, entry)
    document["auths"] = auths


def render_config(document: dict) -> bytes:
    """Serialize a config document as the Docker CLI does: tab-indented JSON."""
    return json.dumps(document, indent="\t", ensure_ascii=False).encode("utf-8")


@contextlib.contextmanager
def _directory_lock(dir_fd: int, path: str):
    """Hold an exclusive flock on the file's directory, waiting at most LOCK_WAIT seconds.

    After the wait the write goes ahead unlocked: a stuck process must not stop renewals,
    and the change check before the rename still guards the merge.
    """
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                logger.warning("writing %s without its lock, held for over %g s", path, LOCK_WAIT)
                yield
                return
            time.sleep(0.05)
    try:
        yield
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)
