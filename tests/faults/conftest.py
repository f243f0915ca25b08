"""Fixtures of the reliability and security tests: a fault proxy and an agent under test."""

import pytest

from tests.aws_proxy import AwsProxy
from tests.faults.harness import AgentUnderTest


@pytest.fixture
def proxy(moto):
    """A counting fault proxy in front of moto: tokens last an hour, passwords change."""
    server = AwsProxy(moto.url, expires_in=3600, rotate_passwords=True).start()
    yield server
    server.stop()


@pytest.fixture
def agent(tmp_path, proxy):
    under_test = AgentUnderTest(tmp_path, proxy.url)
    yield under_test
    under_test.cleanup()
