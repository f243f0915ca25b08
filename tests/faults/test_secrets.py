"""No secret in any output: every command, with failures that quote the requests back.

The agent runs at log_level "debug" with stand-in secrets: an AWS secret key, an AWS
session token, the ECR passwords the proxy hands out, the ECR Public password and a
Rancher secret key from a secret file. The AWS proxy, a Rancher server and a Docker
daemon all respond with errors that quote the request they got, headers and body, as
some proxies and debugging servers do, and a credential helper prints its input back.
Every stdout, stderr and the state file are then searched for the secrets, also in the
base64 forms that Docker config entries and HTTP basic auth use.
"""

import json
import os
import signal
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.aws_proxy import AwsProxy
from tests.faults.harness import (
    AWS_SESSION_TOKEN,
    HOST,
    KNOWN_SECRETS,
    ONE_REGISTRY,
    OTHER_REGISTRY,
    RANCHER_SECRET_KEY,
    AgentUnderTest,
    secret_forms,
    toml_table,
    wait_until,
)

RANCHER_ACCESS_KEY = "STAND-IN-RANCHER-ACCESS-KEY"


class EchoServer:
    """An HTTP server whose every error response quotes the request's headers and body.

    ``ok_paths`` maps a path suffix to a JSON response sent with status 200 instead, so a
    client gets far enough to send its credentials.
    """

    def __init__(self, ok_paths=None):
        ok_paths = ok_paths or {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                path = self.path.split("?")[0]
                for suffix, answer in ok_paths.items():
                    if path.endswith(suffix):
                        return self._send(200, json.dumps(answer))
                quoted = f"{self.command} {self.path} {dict(self.headers)} {body}"
                error = {"type": "error", "status": 500, "code": "Echo", "message": quoted}
                return self._send(500, json.dumps(error))

            def _send(self, status, text):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Api-Version", "1.41")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


ECHO_HELPER = """#!/bin/sh
# A credential helper that fails and prints what it was given, secret included.
input=$(cat)
echo "cannot store: $input"
echo "$input" | base64 -w0 >&2
exit 1
"""


def setup_world(tmp_path, proxy):
    rancher = EchoServer()
    daemon = EchoServer({"/_ping": "OK", "/version": {"ApiVersion": "1.41", "Version": "20.10"}})

    helpers = tmp_path / "bin"
    helpers.mkdir()
    (helpers / "docker-credential-stand-in").write_text(ECHO_HELPER)
    (helpers / "docker-credential-stand-in").chmod(0o755)
    secret_file = tmp_path / "rancher-secret"
    secret_file.write_text(RANCHER_SECRET_KEY + "\n")
    secret_file.chmod(0o600)

    env = {
        "AWS_SESSION_TOKEN": AWS_SESSION_TOKEN,
        "PATH": f"{helpers}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    agent = AgentUnderTest(tmp_path / "agent", proxy.url, env=env)
    helper_file = agent.dir / "helper-docker" / "config.json"
    helper_file.parent.mkdir(parents=True, mode=0o700)
    helper_file.write_text(json.dumps({"credHelpers": {HOST: "stand-in"}}))

    rancher_table = toml_table(
        "rancher",
        {
            "url": f"http://127.0.0.1:{rancher.port}/v2-beta/projects/1a5",
            "access_key": RANCHER_ACCESS_KEY,
            "secret_key_file": str(secret_file),
        },
    )
    docker = {
        "config_files": [str(agent.docker_config), str(helper_file)],
        "host": f"tcp://127.0.0.1:{daemon.port}",
        "verify_login": True,
    }
    registries = ONE_REGISTRY + OTHER_REGISTRY + "[[registry]]\npublic = true\n"
    agent.write(registries, docker=docker, extra=rancher_table)
    return agent, rancher, daemon


def exercise_run(agent, proxy):
    running = agent.start("run")
    running.wait_started()
    assert wait_until(lambda: agent.password_of() is not None, 60)

    calls = proxy.token_calls()
    running.signal(signal.SIGUSR1)
    assert wait_until(lambda: proxy.token_calls() > calls, 60)

    proxy.fail("reflect")
    calls = proxy.token_calls()
    running.signal(signal.SIGUSR1)
    assert wait_until(lambda: "InvalidRequestException" in running.log(), 60)
    proxy.fail(None)

    running.signal(signal.SIGHUP)
    assert wait_until(lambda: "reloading configuration" in running.log(), 60)
    valid = agent.config.read_text()
    agent.config.write_text(valid.replace("[rancher]", "[rancher]\nsecret_key = 'x'"))
    running.signal(signal.SIGHUP)
    assert wait_until(lambda: "reload rejected" in running.log(), 60)
    agent.config.write_text(valid)
    assert running.stop() == 0


def test_no_secret_in_any_output(tmp_path, moto):
    proxy = AwsProxy(moto.url, expires_in=3600, rotate_passwords=True).start()
    agent, rancher, daemon = setup_world(tmp_path, proxy)
    try:
        assert agent.run("check-config").returncode == 0
        assert agent.run("check-config", "--live").returncode == 0
        assert agent.run("refresh").returncode == 1  # the echoing Rancher and daemon fail
        assert agent.run("status").returncode == 0
        assert agent.run("status", "--json").returncode == 0

        proxy.fail("reflect")
        assert agent.run("check-config", "--live").returncode == 1
        assert agent.run("refresh").returncode == 1
        proxy.fail(None)

        exercise_run(agent, proxy)
        agent.run("status")
        agent.run("status", "--json")
    finally:
        proxy.stop()
        rancher.stop()
        daemon.stop()

    outputs = agent.all_output()
    state = (agent.state_dir / "state.json").read_text()
    log = "\n".join(outputs)
    assert "<7>" in log  # debug lines are there to be searched
    assert "InvalidRequestException" in log
    assert "cannot store" in log or "docker-credential-stand-in" in log

    secrets = [*KNOWN_SECRETS, *proxy.issued]
    assert len(proxy.issued) > 5
    leaks = {
        form: where
        for secret in secrets
        for form in secret_forms(secret)
        for where, text in [("output", log), ("state", state)]
        if form in text
    }
    assert leaks == {}


def test_created_files_private(agent, proxy):
    agent.write()
    result = agent.run("refresh")

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(agent.docker_config.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(agent.docker_config.stat().st_mode) == 0o600
    assert stat.S_IMODE(agent.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((agent.state_dir / "state.json").stat().st_mode) == 0o600
    state = (agent.state_dir / "state.json").read_text()
    for secret in (*KNOWN_SECRETS, *proxy.issued):
        for form in secret_forms(secret):
            assert form not in state


def test_created_files_private_under_open_umask(agent, proxy):
    """A umask of 0 (a careless wrapper script) still gets 0600 files in 0700 directories."""
    agent.write()
    old = os.umask(0)  # inherited by the agent process
    try:
        result = agent.run("refresh")
    finally:
        os.umask(old)

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(agent.docker_config.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(agent.docker_config.stat().st_mode) == 0o600
    assert stat.S_IMODE(agent.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((agent.state_dir / "state.json").stat().st_mode) == 0o600


def test_missing_parents_private_under_open_umask(agent, proxy):
    """Missing parents of the state directory and the Docker config are created 0700 too."""
    agent.state_dir = agent.dir / "var" / "lib" / "state"
    agent.docker_config = agent.dir / "home" / "docker" / "config.json"
    agent.write()
    old = os.umask(0)
    try:
        result = agent.run("refresh")
    finally:
        os.umask(old)

    assert result.returncode == 0, result.stderr
    for name in ("var", "var/lib", "var/lib/state", "home", "home/docker"):
        assert stat.S_IMODE((agent.dir / name).stat().st_mode) == 0o700, name
