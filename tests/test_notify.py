"""Notifier against a real AF_UNIX datagram socket, as systemd listens."""

import logging
import os
import socket
import time
import uuid

import pytest

from ecr_agent.notify import MAX_STATUS_CHARS, Notifier


class Receiver:
    """A datagram socket that collects what a Notifier sends."""

    def __init__(self, sock, notify_socket):
        self.sock = sock
        self.notify_socket = notify_socket

    def receive(self):
        return self.sock.recv(65536).decode("utf-8")

    def assert_nothing_sent(self):
        self.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            self.sock.recv(65536)
        self.sock.setblocking(True)


@pytest.fixture
def receiver(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    yield Receiver(sock, str(path))
    sock.close()


@pytest.fixture
def abstract_receiver():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"ecr-agent-test-{uuid.uuid4().hex}"
    sock.bind("\0" + name)
    sock.settimeout(5)
    yield Receiver(sock, "@" + name)
    sock.close()


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def make_notifier(receiver, clock=None, **environ):
    environ = {"NOTIFY_SOCKET": receiver.notify_socket, **environ}
    return Notifier(environ=environ, pid=4242, clock=clock or FakeClock())


def test_ready_without_status(receiver):
    make_notifier(receiver).ready()

    assert receiver.receive() == "READY=1"


def test_ready_with_status(receiver):
    make_notifier(receiver).ready("renewed 2 registries")

    assert receiver.receive() == "READY=1\nSTATUS=renewed 2 registries"


def test_status(receiver):
    make_notifier(receiver).status("next renewal in 6h")

    assert receiver.receive() == "STATUS=next renewal in 6h"


def test_status_is_one_line(receiver):
    make_notifier(receiver).status("first line\nsecond\r\nthird\x00\tend ")

    assert receiver.receive() == "STATUS=first line second third end"


def test_status_is_cut_to_limit(receiver):
    make_notifier(receiver).status("x" * 5000)

    text = receiver.receive().removeprefix("STATUS=")
    assert len(text) == MAX_STATUS_CHARS
    assert text.endswith("...")


def test_status_keeps_utf8(receiver):
    make_notifier(receiver).status("expires 12:00 \u2014 caf\u00e9 \u20ac")

    assert receiver.receive() == "STATUS=expires 12:00 \u2014 caf\u00e9 \u20ac"


def test_reloading_sends_monotonic_usec(receiver):
    make_notifier(receiver, clock=FakeClock(1234.5678915)).reloading()

    assert receiver.receive() == "RELOADING=1\nMONOTONIC_USEC=1234567891"


def time_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_reloading_uses_clock_monotonic(receiver):
    before = time_usec()
    Notifier(environ={"NOTIFY_SOCKET": receiver.notify_socket}).reloading()
    after = time_usec()

    lines = receiver.receive().split("\n")
    assert lines[0] == "RELOADING=1"
    usec = int(lines[1].removeprefix("MONOTONIC_USEC="))
    assert before <= usec <= after


def test_stopping(receiver):
    make_notifier(receiver).stopping()

    assert receiver.receive() == "STOPPING=1"


def test_extend_timeout(receiver):
    make_notifier(receiver).extend_timeout(90)

    assert receiver.receive() == "EXTEND_TIMEOUT_USEC=90000000"


def test_extend_timeout_fraction(receiver):
    make_notifier(receiver).extend_timeout(1.5)

    assert receiver.receive() == "EXTEND_TIMEOUT_USEC=1500000"


def test_extend_timeout_rejects_zero(receiver):
    with pytest.raises(ValueError, match="must be positive"):
        make_notifier(receiver).extend_timeout(0)


def test_watchdog_ping(receiver):
    make_notifier(receiver, WATCHDOG_USEC="60000000").watchdog()

    assert receiver.receive() == "WATCHDOG=1"


def test_watchdog_ping_without_watchdog(receiver):
    make_notifier(receiver).watchdog()

    receiver.assert_nothing_sent()


def test_watchdog_ping_for_other_pid(receiver):
    make_notifier(receiver, WATCHDOG_USEC="60000000", WATCHDOG_PID="1").watchdog()

    receiver.assert_nothing_sent()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "3000000"}, 1.5),
        ({"WATCHDOG_USEC": "1"}, 0.0000005),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "60s"}, None),
    ],
)
def test_watchdog_interval(receiver, environ, expected):
    notifier = make_notifier(receiver, **environ)

    assert notifier.watchdog_interval == expected


def test_watchdog_interval_own_pid_by_default(receiver):
    environ = {
        "NOTIFY_SOCKET": receiver.notify_socket,
        "WATCHDOG_USEC": "10000000",
        "WATCHDOG_PID": str(os.getpid()),
    }

    assert Notifier(environ=environ).watchdog_interval == 5.0


def test_watchdog_interval_needs_socket():
    notifier = Notifier(environ={"WATCHDOG_USEC": "60000000"})

    assert notifier.watchdog_interval is None


def test_abstract_socket(abstract_receiver):
    notifier = make_notifier(abstract_receiver, WATCHDOG_USEC="2000000")
    notifier.ready("up")
    notifier.watchdog()

    assert abstract_receiver.receive() == "READY=1\nSTATUS=up"
    assert abstract_receiver.receive() == "WATCHDOG=1"


def test_several_messages_one_socket(receiver):
    notifier = make_notifier(receiver)
    notifier.ready()
    notifier.status("a")
    notifier.stopping()

    assert receiver.receive() == "READY=1"
    assert receiver.receive() == "STATUS=a"
    assert receiver.receive() == "STOPPING=1"


def test_environ_is_read_from_argument(receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/other.sock")
    make_notifier(receiver).ready()

    assert receiver.receive() == "READY=1"


def test_no_socket_is_noop(caplog):
    caplog.set_level(logging.DEBUG, logger="ecr_agent.notify")
    notifier = Notifier(environ={}, clock=FakeClock())

    notifier.ready("x")
    notifier.status("x")
    notifier.reloading()
    notifier.stopping()
    notifier.extend_timeout(10)
    notifier.watchdog()

    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert caplog.records == []


def test_no_socket_ignores_process_environment(monkeypatch, receiver):
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.notify_socket)
    Notifier(environ={}).ready()

    receiver.assert_nothing_sent()


def test_missing_socket_path_logs_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="ecr_agent.notify")
    missing = str(tmp_path / "absent.sock")
    notifier = Notifier(environ={"NOTIFY_SOCKET": missing}, clock=FakeClock())

    notifier.ready("x")

    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.levelno == logging.WARNING
    assert "READY" in record.getMessage()
    assert missing in record.getMessage()


def test_send_failures_are_rate_limited(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="ecr_agent.notify")
    clock = FakeClock()
    environ = {"NOTIFY_SOCKET": str(tmp_path / "absent.sock"), "WATCHDOG_USEC": "2000000"}
    notifier = Notifier(environ=environ, clock=clock)

    for _ in range(10):
        notifier.watchdog()
        clock.now += 1
    assert len(caplog.records) == 1

    clock.now += 3600
    notifier.status("x")
    assert len(caplog.records) == 2
    assert "10 failed sends" in caplog.records[1].getMessage()


def test_reconnects_after_receiver_returns(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="ecr_agent.notify")
    path = tmp_path / "late.sock"
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(path)}, clock=FakeClock())
    notifier.status("before")

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        notifier.status("after")
        assert sock.recv(4096) == b"STATUS=after"
    assert len(caplog.records) == 1


def test_receiver_gone_logs_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="ecr_agent.notify")
    path = tmp_path / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(path)}, clock=FakeClock())
    notifier.ready()
    sock.close()

    notifier.stopping()

    assert len(caplog.records) == 1
    assert "STOPPING" in caplog.records[0].getMessage()


@pytest.mark.parametrize("value", ["relative.sock", "@", "vsock:2:1234"])
def test_unusable_socket_value_logs_warning(value, caplog):
    caplog.set_level(logging.WARNING, logger="ecr_agent.notify")
    notifier = Notifier(environ={"NOTIFY_SOCKET": value}, clock=FakeClock())

    notifier.ready()

    assert not notifier.enabled
    assert len(caplog.records) == 1
    assert "NOTIFY_SOCKET" in caplog.records[0].getMessage()
