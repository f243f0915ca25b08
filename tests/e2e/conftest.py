"""The e2e rig as a session fixture, torn down even when a test fails or pytest is stopped."""

import atexit
import signal
import time

import pytest

from tests.e2e.rig import Rig, missing_requirements

TIMINGS: dict[str, float] = {}


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def rig():
    """Start the rig once for the session; skip every e2e test if the machine cannot."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)

    started = time.monotonic()
    instance = Rig()
    atexit.register(instance.down, quiet=True)
    # SIGTERM (a CI timeout, for example) becomes KeyboardInterrupt, so teardown runs.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        instance.up()
        TIMINGS["setup"] = instance.setup_seconds
        tests_started = time.monotonic()
        yield instance
        TIMINGS["tests"] = time.monotonic() - tests_started
    finally:
        teardown_started = time.monotonic()
        instance.down(quiet=True)
        atexit.unregister(instance.down)
        signal.signal(signal.SIGTERM, previous)
        TIMINGS["teardown"] = time.monotonic() - teardown_started
        TIMINGS["total"] = time.monotonic() - started


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    parts = [f"{name} {seconds:.1f} s" for name, seconds in TIMINGS.items()]
    terminalreporter.write_line("e2e rig timing: " + ", ".join(parts))
