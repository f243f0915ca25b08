"""The local Docker daemon as a target: verify each login and refresh Swarm service auth.

The Docker SDK is imported only when a publish contacts the daemon, so a configuration
with ``verify_login`` and ``swarm_services`` both off never loads it.
"""

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from contextlib import contextmanager

from ecr_agent.config import DockerSettings
from ecr_agent.credentials import Credentials
from ecr_agent.targets import Outcome

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # seconds, for connecting to the daemon and for each response
REDACTED = "<redacted>"

# os.environ is process-wide: serialise the short DOCKER_CONFIG override below.
_ENVIRONMENT_LOCK = threading.Lock()


def create_client(base_url: str, timeout: float):
    """Create a low-level Docker API client that reads no Docker client config file.

    ``docker.APIClient`` parses ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``
    when it is created and raises on an ``auths`` entry that is not base64 of
    ``user:password``. While the client is created, DOCKER_CONFIG points at a private
    directory holding an empty config, so the user's file cannot break the daemon checks.
    Where no temporary directory can be created, the SDK reads the user's file.
    The API version is negotiated with the daemon (``GET /version``).
    """
    import docker

    with _empty_docker_config():
        return docker.APIClient(base_url=base_url, version="auto", timeout=timeout)


@contextmanager
def _empty_docker_config():
    try:
        temporary = tempfile.TemporaryDirectory(prefix="ecr-agent-docker-")
    except OSError as error:
        log.debug("no temporary directory (%s): the docker SDK reads the user's config", error)
        yield
        return

    with _ENVIRONMENT_LOCK, temporary as directory:
        with open(os.path.join(directory, "config.json"), "w") as file:
            file.write("{}")

        saved = os.environ.get("DOCKER_CONFIG")
        os.environ["DOCKER_CONFIG"] = directory
        try:
            yield
        finally:
            if saved is None:
                del os.environ["DOCKER_CONFIG"]
            else:
                os.environ["DOCKER_CONFIG"] = saved


def registry_host(image: str) -> str:
    """Return the registry host of an image reference, lower-cased.

    ``host/repo:tag@sha256:...`` gives ``host``; a reference without a host part
    (``nginx``, ``library/nginx``) is on Docker Hub, ``docker.io``.
    """
    name = image.split("@", 1)[0]
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return "docker.io"


class DockerDaemonTarget:
    """The Docker daemon at ``settings.host``.

    ``verify_login`` sends each credential to the daemon's ``POST /auth``, which logs in
    to the registry. ``swarm_services`` replaces the registry auth of every Swarm service
    whose image is on a renewed host. The daemon gets ``timeout`` seconds for accepting
    a connection and for each response. ``client_factory(base_url, timeout)`` returns a
    ``docker.APIClient``; tests pass their own.

    The client is kept from one publish to the next, which saves the API version
    negotiation and about 10 ms per renewal (benchmarks/, figure 1). It is dropped when
    the daemon cannot be reached, so the next publish connects and negotiates again.
    """

    name = "docker daemon"

    def __init__(
        self,
        settings: DockerSettings,
        client_factory: Callable | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self.settings = settings
        self.timeout = timeout
        self._client_factory = client_factory or create_client
        self._reported_not_manager = False
        self._secrets: list[str] = []
        self._client = None

    def publish(self, hosts: Mapping[str, Credentials]) -> list[Outcome]:
        """Verify and push ``hosts`` to the daemon; return one Outcome per host.

        Returns an empty list when both ``verify_login`` and ``swarm_services`` are off.
        Errors name the host and the daemon URL, never a password.
        """
        if not hosts or not (self.settings.verify_login or self.settings.swarm_services):
            return []

        secrets = self._secrets = _secrets_of(hosts)
        errors: dict[str, list[str]] = {host: [] for host in hosts}
        warnings: dict[str, list[str]] = {host: [] for host in hosts}
        try:
            client = self._connect()
        except Exception as exc:
            log.debug(
                "connecting to the Docker daemon at %s failed", self.settings.host, exc_info=True
            )
            cause = self._describe(exc)
            log.error("cannot reach the Docker daemon at %s: %s", self.settings.host, cause)
            action = "verify login" if self.settings.verify_login else "Swarm service update"
            for host in hosts:
                errors[host].append(
                    f"{action} failed for {host}: cannot reach the Docker daemon"
                    f" at {self.settings.host}: {cause}"
                )
            return self._outcomes(hosts, errors, warnings, secrets)

        reachable = False
        try:
            _use_credentials(client, hosts)
            reachable = True
            if self.settings.verify_login:
                reachable = self._verify_logins(client, hosts, errors)
            if self.settings.swarm_services and reachable:
                self._update_services(client, hosts, errors, warnings)
        finally:
            if not reachable:
                self.close()

        return self._outcomes(hosts, errors, warnings, secrets)

    def close(self) -> None:
        """Close the client kept between publishes, if there is one."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _connect(self):
        if self._client is None:
            self._client = self._client_factory(self.settings.host, self.timeout)
        return self._client

    def _verify_logins(self, client, hosts, errors) -> bool:
        """Log in to each host through the daemon; return False once the daemon is unreachable.

        After a timeout or a failed connection the remaining hosts get the same error
        without another call, so a hung daemon costs one timeout per publish, not one
        per host.
        """
        unreachable = None
        for host, credentials in hosts.items():
            if unreachable is None:
                try:
                    client.login(
                        username=credentials.username,
                        password=credentials.password,
                        registry=host,
                        reauth=True,
                    )
                except Exception as exc:
                    log.debug("login check for %s failed", host, exc_info=True)
                    cause = self._describe(exc)
                    if _is_connection_error(exc):
                        unreachable = cause
                else:
                    log.info(
                        "Docker daemon at %s accepted the login for %s", self.settings.host, host
                    )
                    continue
            else:
                cause = unreachable
            message = f"verify login failed for {host} at {self.settings.host}: {cause}"
            errors[host].append(self._report(logging.ERROR, message))
        return unreachable is None

    def _update_services(self, client, hosts, errors, warnings) -> None:
        """Replace the registry auth of the Swarm services that pull from ``hosts``."""
        by_lower = {host.lower(): host for host in hosts}
        try:
            if not self._is_swarm_manager(client):
                return
            services = client.services()
        except Exception as exc:
            log.debug("listing Swarm services failed", exc_info=True)
            cause = self._describe(exc)
            log.error("listing Swarm services at %s failed: %s", self.settings.host, cause)
            for host in hosts:
                errors[host].append(
                    f"listing Swarm services for {host} at {self.settings.host} failed: {cause}"
                )
            return

        for service in services:
            spec = service.get("Spec") or {}
            image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image")
            host = by_lower.get(registry_host(image)) if image else None
            if host is None:
                continue

            label = f"{spec.get('Name', '?')} ({service.get('ID', '?')[:12]})"
            if spec.get("Networks"):
                message = (
                    f"Swarm service {label} was not updated: its spec uses the deprecated"
                    " top-level Networks field, which an update would move or drop; run"
                    " `docker service update --with-registry-auth` on it once"
                )
                warnings[host].append(self._report(logging.WARNING, message))
                continue
            error = self._update_service(client, service, label, image, hosts[host])
            if error:
                errors[host].append(self._report(logging.ERROR, error))
            else:
                log.info("updated registry auth of Swarm service %s for %s", label, host)

    def _is_swarm_manager(self, client) -> bool:
        swarm = client.info().get("Swarm") or {}
        if swarm.get("ControlAvailable"):
            return True

        level = logging.DEBUG if self._reported_not_manager else logging.INFO
        log.log(
            level,
            "Docker daemon at %s is not a Swarm manager; Swarm services are not updated",
            self.settings.host,
        )
        self._reported_not_manager = True
        return False

    def _update_service(self, client, service, label, image, credentials) -> str | None:
        """Send the service's current spec back unchanged, with new registry auth.

        The SDK adds the X-Registry-Auth header from the client's auth config for the
        image's registry. Swarm does not restart a task that is between ready and running
        when only the registry auth of its spec changed, because swarmkit's IsTaskDirty
        ignores PullOptions for such tasks. ForceUpdate is sent back unchanged.
        The spec comes from the service list, not from ``fetch_current_spec``, because
        that option inserts server defaults into the spec, and a changed task spec
        restarts the tasks.
        """
        spec = service["Spec"]
        _add_image_host(client, image, credentials)
        try:
            client.update_service(
                service["ID"],
                service["Version"]["Index"],
                task_template=spec.get("TaskTemplate"),
                name=spec.get("Name"),
                labels=spec.get("Labels"),
                mode=spec.get("Mode"),
                update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"),
            )
        except Exception as exc:
            log.debug("updating Swarm service %s failed", label, exc_info=True)
            cause = self._describe(exc)
            return (
                f"updating registry auth of Swarm service {label}"
                f" at {self.settings.host} failed: {cause}"
            )
        return None

    def _describe(self, exc: BaseException) -> str:
        return _redact(describe_error(exc, self.timeout), self._secrets)

    def _report(self, level: int, message: str) -> str:
        """Log a redacted message at ``level`` and return it."""
        message = _redact(message, self._secrets)
        log.log(level, "%s", message)
        return message

    @staticmethod
    def _outcomes(hosts, errors, warnings, secrets) -> list[Outcome]:
        outcomes = []
        for host in hosts:
            error = "; ".join(errors[host]) or None
            warning = "; ".join(warnings[host]) or None
            outcomes.append(
                Outcome(
                    target=DockerDaemonTarget.name,
                    host=host,
                    error=_redact(error, secrets),
                    warning=_redact(warning, secrets),
                )
            )
        return outcomes


def _use_credentials(client, hosts: Mapping[str, Credentials]) -> None:
    """Make ``hosts`` the client's only registry auth.

    ``login()`` and ``update_service()`` read the client's in-memory auth config
    (``_auth_configs``, present in docker SDK 5.0.3 to 7.2) and fall back to the user's
    config file and its credential helpers when it is empty. Setting it here keeps
    both out of the daemon checks.
    """
    import docker.auth

    auths = {host: _auth_entry(host, credentials) for host, credentials in hosts.items()}
    client._auth_configs = docker.auth.AuthConfig({"auths": auths})


def _add_image_host(client, image: str, credentials: Credentials) -> None:
    """Store the credentials under the host as the image spells it (case may differ)."""
    host = image.split("/", 1)[0]
    auths = client._auth_configs.setdefault("auths", {})
    auths.setdefault(host, _auth_entry(host, credentials))


def _auth_entry(host: str, credentials: Credentials) -> dict:
    return {
        "username": credentials.username,
        "password": credentials.password,
        "serveraddress": host,
    }


def _is_connection_error(exc: BaseException) -> bool:
    import requests.exceptions

    kinds = requests.exceptions.ConnectionError | requests.exceptions.Timeout | TimeoutError
    return any(isinstance(e, kinds) for e in _exception_chain(exc))


def describe_error(exc: BaseException, timeout: float) -> str:
    """Return a one-line cause for a failed daemon call: timeout, connection or API error."""
    import docker.errors
    import requests.exceptions

    chain = list(_exception_chain(exc))
    if any(isinstance(e, requests.exceptions.Timeout | TimeoutError) for e in chain):
        return f"no answer within {timeout:g} s"
    if any(isinstance(e, requests.exceptions.ConnectionError) for e in chain):
        reason = next((e.strerror for e in chain if isinstance(e, OSError) and e.strerror), None)
        return f"connection failed: {reason or type(exc).__name__}"
    if isinstance(exc, docker.errors.APIError):
        return _describe_api_error(exc)
    return str(exc) or type(exc).__name__


def _describe_api_error(exc) -> str:
    # The SDK sets ``explanation`` to the daemon's JSON "message", or to the raw body.
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    explanation = " ".join(str(explanation or "").split())
    return f"daemon returned HTTP {exc.status_code}: {explanation or 'no message'}"


def _exception_chain(exc: BaseException):
    """Yield ``exc``, its causes and contexts, and exceptions among their args."""
    seen = set()
    pending = [exc]
    while pending and len(seen) < 20:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([current.__cause__, current.__context__])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)


def _secrets_of(hosts: Mapping[str, Credentials]) -> list[str]:
    secrets = []
    for credentials in hosts.values():
        secrets.extend([credentials.password, credentials.docker_auth()])
    return [secret for secret in secrets if secret]


def _redact(text: str | None, secrets: list[str]) -> str | None:
    if text is None:
        return None
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text
