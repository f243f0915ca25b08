"""Logging to stderr with syslog priority prefixes, so journald keeps each line's level."""

import logging
import os
import sys
import threading

_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

# Libraries whose debug output carries request and response bodies, and with them
# tokens and signatures; they stay at warning whatever the agent's level is.
_QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "docker", "requests", "s3transfer")

_REDACTED = "********"


# Rotating secrets kept for redaction, newest first. Each renewal adds two per registry
# (password and auth value), so 256 cover days of renewals; older ones have expired.
MAX_ROTATING_SECRETS = 256


class SecretFilter(logging.Filter):
    """Replace known secrets in formatted records: a last guard, not the main defence.

    ``add`` keeps a secret for the life of the process (configured keys), ``add_rotating``
    keeps one of the last MAX_ROTATING_SECRETS (ECR passwords, AWS session tokens).
    Records may come from any thread, so the secrets are read and changed under a lock.
    """

    def __init__(self):
        super().__init__()
        self._secrets: set[str] = set()
        self._rotating: dict[str, None] = {}  # insertion-ordered, oldest first
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def add_rotating(self, secret: str | None) -> None:
        if not secret or len(secret) < 4:
            return
        with self._lock:
            self._rotating.pop(secret, None)
            self._rotating[secret] = None
            while len(self._rotating) > MAX_ROTATING_SECRETS:
                del self._rotating[next(iter(self._rotating))]

    def redact(self, text: str) -> str:
        """Return ``text`` with every known secret replaced."""
        with self._lock:
            secrets = sorted({*self._secrets, *self._rotating}, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text)
            record.exc_info = None
        return True


class PriorityFormatter(logging.Formatter):
    """Prefix each line with ``<N>``, the syslog priority journald reads from stderr."""

    def __init__(self, prefix: bool):
        super().__init__("%(message)s")
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.prefix:
            return f"{record.levelname.lower()}: {text}"
        priority = _PRIORITIES.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


secret_filter = SecretFilter()


def setup(level: str = "info", stream=None, environ=None) -> None:
    """Send the agent's log to ``stream`` (stderr) at ``level``.

    The ``<N>`` prefixes are written unless stderr is an interactive terminal outside
    systemd, where plain ``level: message`` lines read better.
    """
    stream = stream or sys.stderr
    environ = os.environ if environ is None else environ
    prefix = "JOURNAL_STREAM" in environ or not stream.isatty()

    handler = logging.StreamHandler(stream)
    handler.setFormatter(PriorityFormatter(prefix))
    handler.addFilter(secret_filter)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
