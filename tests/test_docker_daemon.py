"""DockerDaemonTarget against a small Docker Engine API server on a unix socket.

The server speaks HTTP/1.1 over a socket in a temporary directory, as dockerd does, so
the real docker SDK and requests stack run unchanged. No daemon is needed.
"""

import base64
import json
import logging
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ecr_agent.config import DockerSettings
from ecr_agent.credentials import Credentials
from ecr_agent.docker_daemon import DockerDaemonTarget, registry_host

ROOT = Path(__file__).resolve().parent.parent
HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
OTHER_HOST = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
PASSWORD = "STAND-IN-SECRET-ecr-password-0001"
OTHER_PASSWORD = "STAND-IN-SECRET-ecr-password-0002"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def credentials(password=PASSWORD):
    return Credentials("AWS", password, NOW, NOW + timedelta(hours=12))


class FakeDockerd(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A Docker Engine API subset: version, auth, info, services and service update."""

    daemon_threads = True

    def __init__(self, path):
        self.requests = []
        self.auth_status = 200
        self.auth_delay = 0.0
        self.auth_message = ""
        self.swarm_manager = False
        self.services = []
        self.update_status = 200
        super().__init__(str(path), FakeHandler)

    def add_service(self, service_id, name, image, **spec):
        spec = {
            "Name": name,
            "Labels": {"app": name},
            "TaskTemplate": {
                "ContainerSpec": {"Image": image, "Args": ["/bin/sleep"]},
                "ForceUpdate": 0,
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            **spec,
        }
        self.services.append({"ID": service_id, "Version": {"Index": 11}, "Spec": spec})

    def handle_error(self, request, client_address):
        # The client of the slow-login test gives up before the response is written.
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)

    def requests_to(self, method, path):
        return [r for r in self.requests if r["method"] == method and r["path"] == path]


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        path = re.sub(r"^/v[0-9.]+", "", url.path)
        server = self.server
        server.requests.append(
            {
                "method": self.command,
                "path": path,
                "query": parse_qs(url.query),
                "headers": dict(self.headers),
                "body": json.loads(body) if body else None,
            }
        )
        status, answer = self._route(self.command, path, url)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method, path, url):
        server = self.server
        if path == "/version":
            return 200, {"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12"}
        if path == "/auth":
            time.sleep(server.auth_delay)
            if server.auth_status == 200:
                return 200, {"Status": "Login Succeeded"}
            return server.auth_status, {"message": server.auth_message}
        if path == "/info":
            state = "active" if server.swarm_manager else "inactive"
            swarm = {"LocalNodeState": state, "ControlAvailable": server.swarm_manager}
            return 200, {"Swarm": swarm}
        if path == "/services":
            return 200, server.services
        match = re.fullmatch(r"/services/([^/]+)/update", path)
        if method == "POST" and match:
            if server.update_status != 200:
                return server.update_status, {"message": "update out of sequence"}
            return 200, {"Warnings": None}
        return 404, {"message": f"page not found: {path}"}


@pytest.fixture
def dockerd(tmp_path):
    server = FakeDockerd(tmp_path / "docker.sock")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def logs(caplog):
    """Capture every log record at debug level and check that no password is in them."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    for secret in (PASSWORD, OTHER_PASSWORD, credentials().docker_auth()):
        assert secret not in caplog.text


def target_for(server_or_path, timeout=5.0, **settings):
    path = (
        server_or_path.server_address
        if hasattr(server_or_path, "server_address")
        else server_or_path
    )
    docker = DockerSettings(host=f"unix://{path}", **settings)
    return DockerDaemonTarget(docker, timeout=timeout)


def assert_no_secret(outcomes):
    text = repr(outcomes)
    assert PASSWORD not in text
    assert OTHER_PASSWORD not in text


def test_import_leaves_docker_sdk_unloaded():
    code = "import sys, ecr_agent.docker_daemon; print('docker' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_verify_login_success(dockerd, logs):
    target = target_for(dockerd)

    outcomes = target.publish({HOST: credentials()})

    assert len(outcomes) == 1
    assert outcomes[0].ok
    assert outcomes[0].host == HOST
    assert outcomes[0].target == "docker daemon"
    auth = dockerd.requests_to("POST", "/auth")
    assert len(auth) == 1
    assert auth[0]["body"]["username"] == "AWS"
    assert auth[0]["body"]["password"] == PASSWORD
    assert auth[0]["body"]["serveraddress"] == HOST
    assert f"accepted the login for {HOST}" in logs.text


def test_verify_login_one_outcome_per_host(dockerd, logs):
    target = target_for(dockerd)

    outcomes = target.publish({HOST: credentials(), OTHER_HOST: credentials(OTHER_PASSWORD)})

    assert [outcome.host for outcome in outcomes] == [HOST, OTHER_HOST]
    assert all(outcome.ok for outcome in outcomes)
    auth = dockerd.requests_to("POST", "/auth")
    sent = {r["body"]["serveraddress"]: r["body"]["password"] for r in auth}
    assert sent[HOST] == PASSWORD
    assert sent[OTHER_HOST] == OTHER_PASSWORD


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "unauthorized: authentication required"),
        (500, f"login attempt to https://{HOST}/v2/ failed with status: 401 Unauthorized"),
    ],
)
def test_verify_login_rejected(dockerd, logs, status, message):
    dockerd.auth_status = status
    dockerd.auth_message = message
    target = target_for(dockerd)

    outcomes = target.publish({HOST: credentials()})

    error = outcomes[0].error
    assert error is not None
    assert HOST in error
    assert f"unix://{dockerd.server_address}" in error
    assert f"HTTP {status}" in error
    assert message in error
    assert_no_secret(outcomes)


def test_daemon_message_with_password_redacted(dockerd, logs):
    dockerd.auth_status = 500
    dockerd.auth_message = f"registry said no to AWS:{PASSWORD}"
    target = target_for(dockerd)

    outcomes = target.publish({HOST: credentials()})

    assert "<redacted>" in outcomes[0].error
    assert_no_secret(outcomes)


def test_daemon_that_never_answers(tmp_path, logs):
    path = tmp_path / "hang.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)  # the kernel completes connections, but nothing reads or responds
    try:
        outcomes = target_for(path, timeout=0.5).publish({HOST: credentials()})
    finally:
        listener.close()

    error = outcomes[0].error
    assert error is not None
    assert HOST in error
    assert f"unix://{path}" in error
    assert "no answer within 0.5 s" in error
    assert_no_secret(outcomes)


def test_daemon_that_hangs_on_login_costs_one_timeout(dockerd, logs):
    dockerd.auth_delay = 2.0
    target = target_for(dockerd, timeout=0.5)

    outcomes = target.publish({HOST: credentials(), OTHER_HOST: credentials(OTHER_PASSWORD)})

    assert len(dockerd.requests_to("POST", "/auth")) == 1
    for outcome in outcomes:
        assert outcome.error is not None
        assert outcome.host in outcome.error
        assert "no answer within 0.5 s" in outcome.error


def test_daemon_down_socket_closed(tmp_path, logs):
    path = tmp_path / "closed.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the socket file stays, with no listener

    outcomes = target_for(path).publish({HOST: credentials(), OTHER_HOST: credentials()})

    assert len(outcomes) == 2
    for outcome in outcomes:
        assert outcome.error is not None
        assert outcome.host in outcome.error
        assert f"unix://{path}" in outcome.error
        assert "Connection refused" in outcome.error
    assert_no_secret(outcomes)


def test_daemon_down_socket_missing(tmp_path, logs):
    path = tmp_path / "absent.sock"

    outcomes = target_for(path).publish({HOST: credentials()})

    assert "No such file or directory" in outcomes[0].error
    assert f"unix://{path}" in outcomes[0].error


def test_nothing_enabled_contacts_no_daemon(tmp_path, logs):
    target = target_for(tmp_path / "absent.sock", verify_login=False, swarm_services=False)

    assert target.publish({HOST: credentials()}) == []


def write_user_config(directory, content):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(content))


def test_broken_user_config_is_ignored(dockerd, logs, tmp_path, monkeypatch):
    """An undecodable auths entry and a credential helper in the user's files change nothing."""
    marker = tmp_path / "helper-called"
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-standin"
    helper.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    helper.chmod(0o755)
    broken = {
        "auths": {HOST: {"auth": "not base64 at all!"}},
        "credsStore": "standin",
        "credHelpers": {HOST: "standin"},
    }
    write_user_config(tmp_path / "docker-config", broken)
    write_user_config(tmp_path / "home" / ".docker", broken)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", f"{helper_dir}:{os.environ['PATH']}")
    target = target_for(dockerd, swarm_services=True)
    dockerd.swarm_manager = True
    dockerd.add_service("svc1", "web", f"{HOST}/app:latest")

    outcomes = target.publish({HOST: credentials()})

    assert outcomes[0].ok, outcomes[0].error
    assert not marker.exists()
    assert os.environ["DOCKER_CONFIG"] == str(tmp_path / "docker-config")
    update = dockerd.requests_to("POST", "/services/svc1/update")
    assert len(update) == 1
    assert registry_auth(update[0])["password"] == PASSWORD


def test_docker_config_unset_after_publish(dockerd, logs, monkeypatch):
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)

    target_for(dockerd).publish({HOST: credentials()})

    assert "DOCKER_CONFIG" not in os.environ


def registry_auth(request):
    header = request["headers"]["X-Registry-Auth"]
    return json.loads(base64.urlsafe_b64decode(header))


def test_swarm_updates_only_services_on_renewed_hosts(dockerd, logs):
    dockerd.swarm_manager = True
    digest = "sha256:" + "ab" * 32
    dockerd.add_service(
        "svc1",
        "web",
        f"{HOST}/app:latest@{digest}",
        UpdateConfig={"Parallelism": 1, "Order": "stop-first"},
        EndpointSpec={"Mode": "vip"},
    )
    dockerd.add_service("svc2", "other", "registry.example.com:5000/app:1")
    dockerd.add_service("svc3", "hub", "nginx:latest")
    target = target_for(dockerd, verify_login=False, swarm_services=True)

    outcomes = target.publish({HOST: credentials()})

    assert outcomes[0].ok, outcomes[0].error
    assert dockerd.requests_to("POST", "/auth") == []
    updates = [r for r in dockerd.requests if r["path"].endswith("/update")]
    assert [r["path"] for r in updates] == ["/services/svc1/update"]
    update = updates[0]
    assert update["query"] == {"version": ["11"]}
    spec = dockerd.services[0]["Spec"]
    for key, value in update["body"].items():
        assert value == spec.get(key), key
    for key in spec:
        assert key in update["body"], key
    assert update["body"]["TaskTemplate"]["ForceUpdate"] == 0
    auth = registry_auth(update)
    assert auth["username"] == "AWS"
    assert auth["password"] == PASSWORD
    assert auth["serveraddress"] == HOST
    assert "updated registry auth of Swarm service web (svc1) for " + HOST in logs.text


def test_swarm_image_host_in_other_case(dockerd, logs):
    dockerd.swarm_manager = True
    dockerd.add_service("svc1", "web", f"{HOST.upper()}/app:latest")
    target = target_for(dockerd, verify_login=False, swarm_services=True)

    outcomes = target.publish({HOST: credentials()})

    assert outcomes[0].ok, outcomes[0].error
    (update,) = dockerd.requests_to("POST", "/services/svc1/update")
    assert registry_auth(update)["password"] == PASSWORD


def test_swarm_not_manager_skips_and_logs_once(dockerd, logs):
    dockerd.add_service("svc1", "web", f"{HOST}/app:latest")
    target = target_for(dockerd, verify_login=False, swarm_services=True)

    first = target.publish({HOST: credentials()})
    second = target.publish({HOST: credentials()})

    assert first[0].ok
    assert second[0].ok
    assert dockerd.requests_to("GET", "/services") == []
    notices = [r for r in logs.records if "not a Swarm manager" in r.getMessage()]
    assert [r.levelno for r in notices] == [logging.INFO, logging.DEBUG]


def test_swarm_update_failure_names_service(dockerd, logs):
    dockerd.swarm_manager = True
    dockerd.update_status = 500
    dockerd.add_service("svc1", "web", f"{HOST}/app:latest")
    target = target_for(dockerd, swarm_services=True)

    outcomes = target.publish({HOST: credentials()})

    error = outcomes[0].error
    assert error is not None
    assert "web (svc1)" in error
    assert "update out of sequence" in error
    assert "verify login" not in error
    assert_no_secret(outcomes)


def test_swarm_deprecated_networks_field_warns(dockerd, logs):
    dockerd.swarm_manager = True
    dockerd.add_service("svc1", "web", f"{HOST}/app:latest", Networks=[{"Target": "net1"}])
    target = target_for(dockerd, verify_login=False, swarm_services=True)

    outcomes = target.publish({HOST: credentials()})

    assert outcomes[0].ok
    assert "web (svc1)" in outcomes[0].warning
    assert dockerd.requests_to("POST", "/services/svc1/update") == []


@pytest.mark.parametrize(
    ("image", "host"),
    [
        (f"{HOST}/app:latest", HOST),
        (f"{HOST}/team/app@sha256:{'0' * 64}", HOST),
        (f"{HOST}/app:1@sha256:{'0' * 64}", HOST),
        (f"{HOST.upper()}/app", HOST),
        ("registry.example.com:5000/app", "registry.example.com:5000"),
        ("localhost/app", "localhost"),
        ("nginx", "docker.io"),
        ("library/nginx:1.25", "docker.io"),
        ("nginx@sha256:" + "0" * 64, "docker.io"),
    ],
)
def test_registry_host(image, host):
    assert registry_host(image) == host
