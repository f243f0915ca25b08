"""Timing, process and /proc helpers for the benchmark driver.

Times come from time.perf_counter() (CLOCK_MONOTONIC). CPU time of a finished process
comes from wait4(2), which counts the process and the children it waited for. CPU time
of a running process comes from /proc/PID/stat (utime + stime, in clock ticks) and from
/proc/PID/task/*/schedstat (nanoseconds on the CPU, per live thread).
"""

import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PASS_LINE = re.compile(
    r"renewal pass of (\d+) token requests took ([\d.]+) ms"
    r"(?:: token calls ([\d.]+) ms, targets ([\d.]+) ms, state file ([\d.]+) ms)?"
)
PASS_PARTS = ("pass", "token_calls", "targets", "state_file")


def pass_times(match: re.Match) -> dict[str, float]:
    """Return the seconds of a pass and of its parts from a PASS_LINE match."""
    values = [match.group(2), *match.group(3, 4, 5)]
    return {
        part: float(value) / 1000 for part, value in zip(PASS_PARTS, values, strict=True) if value
    }


@dataclass
class Finished:
    """A process that ran to its end: start time, wall seconds, CPU seconds, exit status."""

    started: float
    seconds: float
    cpu_seconds: float
    returncode: int


def run_timed(command, env, log_path, stdin_data=None, timeout=300.0) -> Finished:
    """Run ``command`` to its end; time it from just before the fork to wait4's return."""
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(map(str, command))}\n".encode())
        log.flush()
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(part) for part in command],
            env=env,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            if stdin_data is not None:
                process.stdin.write(stdin_data.encode())
                process.stdin.close()
            _, status, usage = os.wait4(process.pid, 0)
            elapsed = time.perf_counter() - started
        finally:
            timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Finished(started, elapsed, usage.ru_utime + usage.ru_stime, process.returncode)


class NotifyHub:
    """Datagram sockets that receive sd_notify messages, one per name, read by one thread.

    Each message is kept with its arrival time, so a caller can wait for ``READY=1``
    after a given moment and count ``WATCHDOG=1`` pings.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.selector = selectors.DefaultSelector()
        self.messages: dict[str, list[tuple[float, str]]] = {}
        self.condition = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, name="notify", daemon=True)
        self.thread.start()

    def path(self, name: str) -> str:
        """Return the socket path for ``name``, creating the socket on first use."""
        path = self.directory / f"{name}.sock"
        with self.condition:
            if name not in self.messages:
                path.unlink(missing_ok=True)
                receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                receiver.bind(str(path))
                receiver.setblocking(False)
                self.messages[name] = []
                self.selector.register(receiver, selectors.EVENT_READ, name)
        return str(path)

    def _serve(self) -> None:
        while not self.stopped:
            for key, _ in self.selector.select(timeout=0.5):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                arrived = time.perf_counter()
                with self.condition:
                    self.messages[key.data].append((arrived, data.decode("utf-8", "replace")))
                    self.condition.notify_all()

    def wait_for(self, name: str, assignment: str, after: float, timeout: float) -> float:
        """Return the arrival time of the first message with ``assignment`` after ``after``."""
        deadline = time.perf_counter() + timeout
        with self.condition:
            while True:
                for arrived, text in self.messages.get(name, []):
                    if arrived >= after and assignment in text.split("\n"):
                        return arrived
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError(f"no {assignment} from {name} within {timeout:g} s")
                self.condition.wait(remaining)

    def count(self, name: str, assignment: str, start: float, end: float) -> int:
        with self.condition:
            return sum(
                1
                for arrived, text in self.messages.get(name, [])
                if start <= arrived <= end and assignment in text.split("\n")
            )

    def forget(self, name: str) -> None:
        with self.condition:
            self.messages[name] = []

    def close(self) -> None:
        self.stopped = True
        self.thread.join(timeout=2)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


class RunningProcess:
    """A long-running child (ecr-agent run, floor --sleep) whose stderr lines are kept.

    A reader thread copies each line to the log file and keeps it with its arrival time.
    """

    def __init__(self, name: str, command, env, log_path: Path):
        self.name = name
        self.command = [str(part) for part in command]
        self.env = env
        self.log_path = Path(log_path)
        self.lines: list[tuple[float, str]] = []
        self.condition = threading.Condition()
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> "RunningProcess":
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._read, name=f"log {self.name}", daemon=True).start()
        return self

    def _read(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.command)}\n".encode())
            for raw in self.process.stderr:
                arrived = time.perf_counter()
                log.write(raw)
                with self.condition:
                    self.lines.append((arrived, raw.decode("utf-8", "replace").rstrip("\n")))
                    self.condition.notify_all()

    def wait_line(self, pattern: re.Pattern, start_index: int, timeout: float):
        """Return (arrival time, match) of the first line from ``start_index`` on that matches."""
        deadline = time.perf_counter() + timeout
        index = start_index
        with self.condition:
            while True:
                while index < len(self.lines):
                    arrived, line = self.lines[index]
                    index += 1
                    match = pattern.search(line)
                    if match:
                        return arrived, match
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no line matching {pattern.pattern!r}")
                self.condition.wait(min(remaining, 1.0))

    def count_lines(self, pattern: re.Pattern) -> int:
        with self.condition:
            return sum(1 for _, line in self.lines if pattern.search(line))

    def renew_now(self, timeout: float = 120.0) -> dict[str, float]:
        """Send SIGUSR1 and wait for the pass's timing line.

        Returns the seconds of the pass and its parts as the agent logged them (see
        pass_times), and ``signal_to_line``, the seconds from the signal to the line's
        arrival.
        """
        with self.condition:
            start_index = len(self.lines)
        sent = time.perf_counter()
        os.kill(self.pid, signal.SIGUSR1)
        arrived, match = self.wait_line(PASS_LINE, start_index, timeout)
        return dict(pass_times(match), signal_to_line=arrived - sent)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


# -- /proc ---------------------------------------------------------------------------


def status_kib(pid: int, field: str) -> int:
    """Return a ``kB`` field of /proc/PID/status, such as VmRSS or RssAnon."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds_stat(pid: int) -> float:
    """Return utime + stime of a process (all its threads, dead ones too), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds_schedstat(pid: int) -> float:
    """Return the time the live threads of a process spent on a CPU, in seconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


# -- profiles ------------------------------------------------------------------------

# Groups of frames in a profile of a renewal pass, by a text their frames contain.
PROFILE_GROUPS = {
    "botocore API call (serialize, sign, send, parse)": "_make_api_call (botocore",
    "token thread start and futures": "Thread.start (threading",
    "config file target": "DockerConfigTarget.publish",
    "state file": "Agent._save_state",
    "logging": "Logger._log (logging",
}


def summarize_profile(raw: str, top: int = 16) -> dict:
    """Summarize py-spy's raw output: sample shares of frame groups and of top functions.

    Each line of the raw (collapsed) format is a stack, frames separated by ``;`` with the
    innermost last, and a sample count at the end. A function counts once per stack.
    """
    total = 0
    groups: dict[str, int] = dict.fromkeys(PROFILE_GROUPS, 0)
    functions: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        for group, marker in PROFILE_GROUPS.items():
            if marker in stack:
                groups[group] += count
        seen = set()
        for frame in stack.split(";"):
            name = frame.split(":", 1)[0] + ")" if "(" in frame else frame
            if name not in seen:
                seen.add(name)
                functions[name] = functions.get(name, 0) + count
    ranked = sorted(functions.items(), key=lambda item: item[1], reverse=True)
    return {"samples": total, "groups": groups, "top": ranked[:top]}


# -- statistics ----------------------------------------------------------------------


def summarize(values) -> dict:
    values = [float(value) for value in values]
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "values": []}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
