"""GetAuthorizationToken calls: one per AWS credential source, region and endpoint.

An ECR token is valid for every registry the principal may read, so registries that share
a source share a call; their accounts go in ``registryIds`` (at most 10 a call), and each
registry gets the entry returned for its account, as amazon-ecr-credential-helper does.
"""

import base64
import binascii
import concurrent.futures
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ecr_agent import __version__, hosts, logs
from ecr_agent.config import AwsSource, Registry
from ecr_agent.credentials import Credentials
from ecr_agent.errors import TokenError

log = logging.getLogger(__name__)

MAX_REGISTRY_IDS = 10  # the limit ECR puts on registryIds in one call
ROLE_DURATION = 3600  # seconds an assumed-role session lasts; botocore refreshes it early

CONNECT_TIMEOUT = 5  # seconds to open a connection to an AWS endpoint
READ_TIMEOUT = 8  # seconds an endpoint may send nothing while a response is due
MAX_ATTEMPTS = 3  # HTTP requests per API call, the first one included
# Seconds one token request may take in all, an STS AssumeRole included. The timeouts
# above end a silent endpoint within 3 * (5 + 8) s plus at most 1 + 2 s of botocore
# backoff, so 42 s. They do not end an endpoint that sends its response a byte at a time,
# and an AssumeRole before the token call can double the time. So the call runs in its
# own thread and is given up after CALL_TIMEOUT, in time for the next ping to systemd's
# watchdog (WatchdogSec=60 in the shipped unit).
CALL_TIMEOUT = 45.0


@dataclass(frozen=True)
class TokenRequest:
    """One GetAuthorizationToken call and the registries it covers."""

    source: AwsSource
    registries: tuple[Registry, ...]

    @property
    def label(self) -> str:
        if self.source.public:
            return hosts.PUBLIC_HOST
        accounts = ", ".join(registry.account or "" for registry in self.registries)
        return f"{self.source.region} (account {accounts})"


@dataclass(frozen=True)
class TokenResult:
    """Credentials per registry host, and the reason for each registry left without."""

    credentials: dict[str, Credentials]
    errors: dict[str, str]


def plan_requests(registries: Iterable[Registry]) -> list[TokenRequest]:
    """Group registries by credential source, at most MAX_REGISTRY_IDS accounts a call."""
    groups: dict[AwsSource, list[Registry]] = {}
    for registry in registries:
        groups.setdefault(registry.source, []).append(registry)

    requests = []
    for source, members in groups.items():
        size = 1 if source.public else MAX_REGISTRY_IDS
        for start in range(0, len(members), size):
            requests.append(TokenRequest(source, tuple(members[start : start + size])))
    return requests


def decode_token(token: str, expires_at: datetime, requested_at: datetime, label: str):
    """Decode a base64 ``AWS:<password>`` token into Credentials.

    Raises TokenError naming ``label`` for a token that is not of that form; the message
    never includes the token.
    """
    try:
        text = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as error:
        raise TokenError(label, "the authorization token is not valid base64 text") from error
    username, separator, password = text.partition(":")
    if not separator or not username or not password:
        raise TokenError(label, "the authorization token is not of the form user:password")
    if not isinstance(expires_at, datetime):
        raise TokenError(label, "the response has no expiresAt time")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return Credentials(username, password, requested_at, expires_at)


class TokenClient:
    """Makes token calls, keeping one boto3 client per credential source.

    Clients are built on first use and reused; ``reset`` drops them so that the next call
    reads the AWS credential sources again (rotated keys, a changed profile). Sources that
    differ only in region or endpoint share one boto3 session, and with it the service
    models and endpoint data it has loaded: a session of its own costs each region about
    9 MB and 0.1 s (benchmarks/, figure 5).
    """

    def __init__(self, wall_clock: Callable[[], datetime], environ=None, call_timeout=CALL_TIMEOUT):
        self._wall_clock = wall_clock
        self._environ = environ
        self._call_timeout = call_timeout
        self._clients: dict[AwsSource, object] = {}
        self._sessions: dict[tuple, object] = {}
        # boto3 sessions are not thread-safe; a client missing after prepare() is built
        # by the calling thread.
        self._build_lock = threading.Lock()

    def reset(self) -> None:
        with self._build_lock:
            self._clients.clear()
            self._sessions.clear()

    def prepare(self, requests: Iterable[TokenRequest]) -> None:
        """Build the clients of ``requests`` now; boto3 sessions are not thread-safe."""
        for request in requests:
            try:
                self._client(request.source)
            except TokenError as error:
                log.debug("client for %s not built: %s", request.label, error)

    def fetch(self, request: TokenRequest) -> TokenResult:
        """Call GetAuthorizationToken for ``request``; raise TokenError if the call fails."""
        client = self._client(request.source)
        requested_at = self._wall_clock()
        try:
            entries = _call_in_thread(
                lambda: _get_token_entries(client, request), self._call_timeout, request.label
            )
        except _CallTimeout as error:
            # The abandoned call keeps its client busy, so the next call builds a new one.
            self._clients.pop(request.source, None)
            cause = (
                f"timed out after {self._call_timeout:g} s without a complete response; "
                "check the network path to the endpoint"
            )
            raise TokenError(request.label, cause) from error
        except Exception as error:  # botocore raises many unrelated classes
            raise TokenError(request.label, describe_aws_error(error)) from error
        return self._match(request, entries, requested_at)

    def _match(self, request, entries, requested_at) -> TokenResult:
        by_account: dict[str | None, dict] = {}
        for entry in entries:
            try:
                parsed = hosts.parse_host(entry.get("proxyEndpoint", ""))
            except ValueError:
                continue
            by_account[parsed.account] = entry

        credentials, errors = {}, {}
        for registry in request.registries:
            entry = by_account.get(registry.account)
            if entry is None:
                errors[registry.host] = "the answer has no entry for this registry"
                continue
            try:
                decoded = decode_token(
                    entry.get("authorizationToken", ""),
                    entry.get("expiresAt"),
                    requested_at,
                    registry.host,
                )
            except TokenError as error:
                errors[registry.host] = error.cause
                continue
            # Targets may log errors that quote what they sent, the password included.
            logs.secret_filter.add_rotating(decoded.password)
            logs.secret_filter.add_rotating(decoded.docker_auth())
            credentials[registry.host] = decoded
        return TokenResult(credentials, errors)

    def _client(self, source: AwsSource):
        client = self._clients.get(source)
        if client is None:
            with self._build_lock:
                client = self._clients.get(source)
                if client is None:
                    client = _build_client(source, self._sessions)
                    self._clients[source] = client
        return client


class _CallTimeout(Exception):
    """A call did not finish within its time limit."""


def _call_in_thread(function, timeout: float, label: str):
    """Run ``function`` in a daemon thread and return its result.

    Raises _CallTimeout when it has not finished after ``timeout`` seconds.

    NOTE: a call past ``timeout`` is abandoned, not cancelled. Its thread ends when
    botocore's own timeouts end the call, so an endpoint that keeps trickling bytes keeps
    one thread and one connection until it stops.
    """
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run():
        future.set_running_or_notify_cancel()
        try:
            future.set_result(function())
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=run, name=f"token call {label}", daemon=True).start()
    done, _ = concurrent.futures.wait([future], timeout)
    if not done:
        raise _CallTimeout(label)
    return future.result()


def _get_token_entries(client, request: TokenRequest) -> list[dict]:
    if request.source.public:
        answer = client.get_authorization_token()
        return [dict(answer["authorizationData"], proxyEndpoint=hosts.PUBLIC_HOST)]
    ids = [registry.account for registry in request.registries]
    return client.get_authorization_token(registryIds=ids)["authorizationData"]


def _botocore_config(**options):
    """Return the botocore Config of every client: short timeouts, three attempts.

    botocore's ``max_attempts`` counts retries, so ``total_max_attempts`` sets the
    number of requests, the first one included.
    """
    import botocore.config

    return botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        user_agent_extra=f"ecr-agent/{__version__}",
        **options,
    )


def _import_boto3():
    """Import boto3 without pyOpenSSL.

    botocore (1.29 in Debian 12, 1.44 alike) imports urllib3.contrib.pyopenssl only to
    reach the standard library's SSLContext saved there, and uses that same class when the
    import fails. Where pyOpenSSL is installed (Debian's python3-openssl), that import
    loads pyOpenSSL and cryptography: 5 to 7 MB more resident memory for the agent on
    Debian 12 and 35 ms more start-up (benchmarks/, figure 4). No request goes through
    pyOpenSSL unless something injects it into urllib3, and nothing in ecr-agent does.
    """
    sys.modules.setdefault("urllib3.contrib.pyopenssl", None)
    import boto3

    return boto3


def _session_key(source: AwsSource) -> tuple:
    """Return what the session of ``source`` depends on: its credential settings.

    An assumed-role session calls STS in the source's region, so that counts too.
    """
    if not source.role_arn:
        return (source.profile,)
    role = (source.role_arn, source.external_id, source.role_session_name)
    return (source.profile, *role, source.sts_endpoint_url, source.region)


def _build_client(source: AwsSource, sessions: dict):
    """Build the client of ``source`` from the session in ``sessions`` it shares, if any."""
    boto3 = _import_boto3()

    key = _session_key(source)
    try:
        session = sessions.get(key)
        if session is None:
            session = boto3.Session(profile_name=source.profile or None)
            if source.role_arn:
                session = _assume_role_session(session, source)
        credentials = session.get_credentials()
    except Exception as error:
        raise TokenError(_source_label(source), describe_aws_error(error)) from error
    if credentials is None:
        raise TokenError(_source_label(source), "no AWS credentials found " + _CHAIN_HINT)
    sessions[key] = session

    log.info("AWS credentials for %s come from %s", _source_label(source), credentials.method)
    config = _botocore_config(
        use_fips_endpoint=source.fips, use_dualstack_endpoint=source.dualstack
    )
    try:
        client = session.client(
            "ecr-public" if source.public else "ecr",
            region_name=source.region,
            endpoint_url=source.endpoint_url or None,
            config=config,
        )
    except Exception as error:  # botocore rejects endpoints and regions with ValueError
        raise TokenError(_source_label(source), describe_aws_error(error)) from error
    client.meta.events.register("request-created", _remember_session_token)
    return client


def _remember_session_token(request, **kwargs) -> None:
    """Add the session token a signed request carries to the secrets that are redacted.

    An endpoint or proxy may quote the request's headers in its error message.
    """
    token = request.headers.get("X-Amz-Security-Token")
    if isinstance(token, bytes):
        token = token.decode("utf-8", "replace")
    logs.secret_filter.add_rotating(token)


_CHAIN_HINT = (
    "(looked in the environment, the shared credentials and config files, and instance "
    "metadata unless AWS_EC2_METADATA_DISABLED is set); set a profile or provide credentials"
)


def _assume_role_session(base, source: AwsSource):
    """Return a session whose credentials assume ``source.role_arn`` and refresh themselves."""
    import boto3
    import botocore.credentials
    import botocore.session

    sts = base.client(
        "sts",
        region_name=source.region,
        endpoint_url=source.sts_endpoint_url or None,
        config=_botocore_config(),
    )
    sts.meta.events.register("request-created", _remember_session_token)

    def refresh():
        arguments = {
            "RoleArn": source.role_arn,
            "RoleSessionName": source.role_session_name,
            "DurationSeconds": ROLE_DURATION,
        }
        if source.external_id:
            arguments["ExternalId"] = source.external_id
        answer = sts.assume_role(**arguments)["Credentials"]
        return {
            "access_key": answer["AccessKeyId"],
            "secret_key": answer["SecretAccessKey"],
            "token": answer["SessionToken"],
            "expiry_time": answer["Expiration"].isoformat(),
        }

    credentials = botocore.credentials.DeferredRefreshableCredentials(
        refresh_using=refresh, method="assume-role"
    )
    core = botocore.session.get_session()
    # botocore has no public setter for a session's credentials; get_credentials()
    # returns this attribute once it is set.
    core._credentials = credentials
    log.info("assuming role %s for %s", source.role_arn, _source_label(source))
    return boto3.Session(botocore_session=core)


def _source_label(source: AwsSource) -> str:
    if source.public:
        return hosts.PUBLIC_HOST
    profile = f" profile {source.profile}" if source.profile else ""
    return f"{source.region}{profile}"


def describe_aws_error(error: Exception) -> str:
    """Describe a botocore or network error in one line, known secrets redacted.

    The message of an error response is the server's text, which may quote the request.
    """
    return logs.secret_filter.redact(_describe_aws_error(error))


def _describe_aws_error(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "error")
        message = response["Error"].get("Message", "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        status_text = f" (HTTP {status})" if status else ""
        return f"{code}{status_text}: {message}".rstrip(": ")
    name = type(error).__name__
    if name == "NoCredentialsError":
        return "no AWS credentials found " + _CHAIN_HINT
    return f"{name}: {error}"
