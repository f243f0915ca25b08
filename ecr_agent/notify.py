"""Service notifications to systemd (sd_notify) and the watchdog interval.

See sd_notify(3) for the protocol: newline-separated ``KEY=VALUE`` assignments in one
datagram sent to the AF_UNIX socket named by ``$NOTIFY_SOCKET``.
"""

import logging
import os
import socket
import time

import sdnotify

log = logging.getLogger(__name__)

# systemd ignores a notification datagram that does not fit its buffer (NOTIFY_BUFFER_MAX,
# PIPE_BUF: 4096 bytes on Linux), so status text is cut well below that.
MAX_STATUS_CHARS = 1024

# Seconds a send may block when systemd's receive queue is full.
SEND_TIMEOUT = 5.0

# Minimum seconds between two warnings about failed sends. The next warning counts the
# failures in between.
FAILURE_LOG_INTERVAL = 300.0


class _Connection(sdnotify.SystemdNotifier):
    """A SystemdNotifier connected to an explicit address, raising on send errors.

    ``SystemdNotifier.__init__`` reads ``NOTIFY_SOCKET`` from ``os.environ`` and hides
    errors unless ``debug=True``, so this class connects to the address it is given and
    sets ``debug`` so that ``notify()`` raises.
    """

    def __init__(self, address: str):
        self.debug = True
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.socket.settimeout(SEND_TIMEOUT)
        try:
            self.socket.connect(address)
        except OSError:
            self.socket.close()
            raise

    def notify(self, state: str) -> None:
        # sdnotify encodes with latin-1, but systemd reads UTF-8. Passing UTF-8 bytes through
        # latin-1 text makes sdnotify send the UTF-8 bytes unchanged.
        super().notify(state.encode("utf-8", errors="replace").decode("latin-1"))

    def close(self) -> None:
        self.socket.close()


def one_line(text: str) -> str:
    """Return ``text`` as a single line for ``STATUS=``: control characters become spaces."""
    cleaned = "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in text)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > MAX_STATUS_CHARS:
        cleaned = cleaned[: MAX_STATUS_CHARS - 3] + "..."
    return cleaned


def socket_address(value: str) -> str | None:
    """Return the connect() address for a ``NOTIFY_SOCKET`` value, or None if unusable.

    A leading ``@`` names a socket in the abstract namespace. systemd 253 and newer also
    accept ``vsock:`` addresses, which this module does not support.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


class Notifier:
    """Sender of the service's sd_notify messages. Without NOTIFY_SOCKET, methods do nothing.

    Settings come from ``environ`` (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``WATCHDOG_PID``).
    ``clock`` returns CLOCK_MONOTONIC seconds. It is the source of ``MONOTONIC_USEC`` and
    paces the warnings about failed sends. A send that fails with OSError is logged at
    warning level, not raised. The Notifier starts no thread: the caller pings the watchdog.
    """

    def __init__(self, environ=os.environ, pid=None, clock=time.monotonic):
        self._socket_value = environ.get("NOTIFY_SOCKET", "")
        self._watchdog_usec = environ.get("WATCHDOG_USEC", "")
        self._watchdog_pid = environ.get("WATCHDOG_PID", "")
        self._pid = pid
        self._clock = clock
        self._connection = None
        self._failures = 0
        self._last_warning_at = None

        self._address = socket_address(self._socket_value) if self._socket_value else None
        if self._socket_value and self._address is None:
            log.warning(
                "NOTIFY_SOCKET is %r, but an absolute path or @name is expected, "
                "so systemd notifications are off",
                self._socket_value,
            )

    @property
    def enabled(self) -> bool:
        """True when a usable NOTIFY_SOCKET was given."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC), or None when off.

        None also when WATCHDOG_PID names another process or WATCHDOG_USEC is not a
        positive integer, as sd_watchdog_enabled(3) decides.
        """
        if not self.enabled or not self._watchdog_usec:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None

        if self._watchdog_pid:
            own_pid = self._pid if self._pid is not None else os.getpid()
            if self._watchdog_pid != str(own_pid):
                return None
        return usec / 2_000_000

    def ready(self, status: str | None = None) -> None:
        """Send ``READY=1``, with ``STATUS=`` when ``status`` is given."""
        self._send(["READY=1", *self._status_lines(status)])

    def status(self, text: str) -> None:
        """Send ``STATUS=``, the line ``systemctl status`` shows. Never pass a secret."""
        self._send(self._status_lines(text))

    def reloading(self) -> None:
        """Send ``RELOADING=1`` with ``MONOTONIC_USEC``, as Type=notify-reload (253+) expects.

        systemd uses the time stamp to match the message to the reload it requested.
        """
        usec = int(self._clock() * 1_000_000)
        self._send(["RELOADING=1", f"MONOTONIC_USEC={usec}"])

    def stopping(self) -> None:
        self._send(["STOPPING=1"])

    def extend_timeout(self, seconds: float) -> None:
        """Ask systemd for ``seconds`` more before the current start, reload or stop times out."""
        usec = int(seconds * 1_000_000)
        if usec <= 0:
            raise ValueError(f"extend_timeout seconds is {seconds!r}, but must be positive")
        self._send([f"EXTEND_TIMEOUT_USEC={usec}"])

    def watchdog(self) -> None:
        """Send ``WATCHDOG=1`` when the watchdog is on for this process."""
        if self.watchdog_interval is not None:
            self._send(["WATCHDOG=1"])

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @staticmethod
    def _status_lines(text: str | None) -> list[str]:
        if text is None:
            return []
        return [f"STATUS={one_line(text)}"]

    def _send(self, assignments: list[str]) -> None:
        if self._address is None:
            return
        message = "\n".join(assignments)
        try:
            if self._connection is None:
                self._connection = _Connection(self._address)
            self._connection.notify(message)
        except OSError as error:
            # The next send connects again, so a restarted receiver is picked up.
            self.close()
            self._report_failure(assignments[0], error)

    def _report_failure(self, first_assignment: str, error: OSError) -> None:
        self._failures += 1
        now = self._clock()
        last = self._last_warning_at
        if last is not None and now - last < FAILURE_LOG_INTERVAL:
            return

        key = first_assignment.split("=", 1)[0]
        log.warning(
            "sd_notify %s to %s failed (%d failed sends since the last warning): %s",
            key,
            self._socket_value,
            self._failures,
            error,
        )
        self._last_warning_at = now
        self._failures = 0
