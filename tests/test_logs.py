import io
import logging

import pytest

from ecr_agent import logs


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.fixture
def stream():
    output = Stream(tty=False)
    logs.setup("debug", stream=output, environ={})
    yield output
    logs.setup("info", stream=Stream(tty=False), environ={})


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
    ],
)
def test_priority_prefix(stream, level, prefix):
    logging.getLogger("ecr_agent.test").log(level, "renewed %s", "host")
    assert stream.getvalue() == f"{prefix}renewed host\n"


def test_terminal_gets_plain_levels():
    output = Stream(tty=True)
    logs.setup("info", stream=output, environ={})
    logging.getLogger("ecr_agent.test").warning("degraded")
    assert output.getvalue() == "warning: degraded\n"


def test_journal_gets_prefix_even_on_terminal():
    output = Stream(tty=True)
    logs.setup("info", stream=output, environ={"JOURNAL_STREAM": "8:1234"})
    logging.getLogger("ecr_agent.test").info("started")
    assert output.getvalue() == "<6>started\n"


def test_library_debug_stays_quiet(stream):
    logging.getLogger("botocore.endpoint").debug("Response body: token")
    assert stream.getvalue() == ""


def test_known_secret_is_redacted(stream):
    logs.secret_filter.add("STAND-IN-SECRET-KEY")
    logging.getLogger("ecr_agent.test").error("bad key %s", "STAND-IN-SECRET-KEY")
    try:
        raise ValueError("STAND-IN-SECRET-KEY in traceback")
    except ValueError:
        logging.getLogger("ecr_agent.test").exception("failed")
    assert "STAND-IN-SECRET-KEY" not in stream.getvalue()
    assert "********" in stream.getvalue()
