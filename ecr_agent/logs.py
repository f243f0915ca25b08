"""Logging to stderr with syslog priority prefixes, so journald keeps each line's level."""

import logging
import os
import sys

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


class SecretFilter(logging.Filter):
    """Replace known secrets in formatted records: a last guard, not the main defence."""

    def __init__(self):
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        for secret in self._secrets:
            if secret in message:
                message = message.replace(secret, _REDACTED)
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = _redact(
                logging.Formatter().formatException(record.exc_info), self._secrets
            )
            record.exc_info = None
        return True


def _redact(text: str, secrets) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


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
