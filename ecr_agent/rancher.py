"""Report renewed credentials to Rancher 1.6 (API v1, v2-beta) and Rancher 2.x (API v3).

``publish`` only records the newest credentials and wakes the target's own worker
thread, so a slow or unreachable Rancher never delays the Docker targets. The worker
pushes to Rancher and retries failures with capped exponential backoff and full
jitter, always with the newest credentials. The API specifics live in
``rancher_v1`` (registries and registry credentials) and ``rancher_v3``
(``dockerCredential`` and ``namespacedDockerCredential``).

Requests use HTTP basic auth with the access key as user and the secret key as
password, which Rancher 1.6 API keys and Rancher 2.x API tokens both accept.
"""

import base64
import logging
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests

from ecr_agent import __version__
from ecr_agent.config import RancherSettings
from ecr_agent.credentials import Credentials
from ecr_agent.errors import TargetError
from ecr_agent.targets import Outcome

log = logging.getLogger(__name__)

NAME = "rancher"
TIMEOUT = (5.0, 30.0)  # seconds to connect, seconds to wait for each read
MAX_PAGES = 200  # a guard against a collection whose next link never ends
CLOSE_WAIT = 5.0  # seconds close() waits for the worker; a request in flight may take longer
_DETAIL_LIMIT = 300  # characters of a Rancher error message kept in our own messages
_REDACTED = "********"

_URL_FORMS = (
    "https://HOST/v2-beta/projects/1a5 or https://HOST/v1 (Rancher 1.6), "
    "https://HOST/v3/projects/c-xxxxx:p-xxxxx (Rancher 2.x)"
)
# An optional path prefix (Rancher behind a proxy path), the API version, the project.
_V1_PATH = re.compile(
    r"^(?P<prefix>(?:/[^/]+)*?)/(?P<api>v1|v2-beta)(?:/projects/(?P<project>[a-z0-9]+))?$"
)
_V3_PATH = re.compile(
    r"^(?P<prefix>(?:/[^/]+)*?)/v3/projects?/(?P<project>[a-z0-9][a-z0-9.-]*:[a-z0-9][a-z0-9-]*)$"
)


@dataclass(frozen=True)
class ApiLocation:
    """A parsed ``rancher.url``: which API it names and where.

    ``project`` is None for a Rancher 1.6 API root, which an environment API key
    resolves to its own environment.
    """

    url: str
    origin: str  # scheme://host[:port]
    prefix: str  # path before /v1, /v2-beta or /v3, usually empty
    api: str  # "v1", "v2-beta" or "v3"
    project: str | None

    @property
    def rancher2(self) -> bool:
        return self.api == "v3"

    @property
    def project_url(self) -> str:
        """Return the URL under which Rancher serves the project's own collections."""
        if not self.rancher2:
            return self.url
        return f"{self.origin}{self.prefix}/v3/project/{self.project}"


def parse_url(url: str) -> ApiLocation:
    """Parse a Rancher project API URL; raise ValueError with the reason."""
    problem = validate_url(url)
    if problem:
        raise ValueError(f"rancher.url {problem}")

    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    origin = urlunsplit((parts.scheme.lower(), parts.netloc.lower(), "", "", ""))
    match = _V1_PATH.match(path) or _V3_PATH.match(path)
    api = match.groupdict().get("api") or "v3"
    return ApiLocation(f"{origin}{path}", origin, match["prefix"], api, match["project"])


def validate_url(url: str) -> str | None:
    """Return why ``url`` is not a Rancher project API URL, or None when it is one.

    The message continues the key name, as in "rancher.url is ..., but ...".
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return f"is {url!r}, but it is not a valid URL; expected {_URL_FORMS}"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"is {url!r}, but it needs an https:// (or http://) scheme and a host: {_URL_FORMS}"
    if parts.username or parts.password:
        # The value is left out of the message: it contains a password.
        return (
            "contains a user name or password, but the API key "
            "belongs in access_key and secret_key_file"
        )
    if parts.query or parts.fragment:
        return f"is {url!r}, but it must not have a query or fragment; expected {_URL_FORMS}"

    path = parts.path.rstrip("/")
    if _V1_PATH.match(path) or _V3_PATH.match(path):
        return None
    return f"is {url!r}, but it names no Rancher project API; expected {_URL_FORMS}"


def normalize_host(address: str) -> str:
    """Reduce a registry address to a bare lowercase host for comparisons.

    Rancher users type addresses in many forms: ``https://HOST/``, ``HOST:443``,
    ``Host``. All of them name the host that Docker logs in to.
    """
    value = address.strip().lower()
    for scheme in ("https://", "http://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
            break
    value = value.split("/", 1)[0]
    if value.endswith(":443"):
        value = value[: -len(":443")]
    return value


def split_api_key(access_key: str, secret_key: str) -> tuple[str, str]:
    """Return the user and password for basic auth.

    A Rancher 2.x bearer token ``token-xxxxx:secret`` may be given whole as the
    secret key, with the access key empty or equal to its first half.
    """
    head, colon, tail = secret_key.partition(":")
    if colon and (not access_key or head == access_key):
        return head, tail
    return access_key, secret_key


class RancherError(TargetError):
    """A Rancher request or one credential update failed.

    ``status`` is the HTTP status, or None when no response arrived. The message names
    hosts, resource ids and URLs, never a secret.
    """

    def __init__(self, cause: str, status: int | None = None):
        self.cause = cause
        self.status = status
        super().__init__(NAME, cause)


class RancherClient:
    """HTTP access to one Rancher API: JSON requests, collections, schemas, errors.

    ``denied_hint`` is appended to 403 and 405 errors; each API version sets its own
    advice on the key it needs. ``secrets`` contains the values that are replaced in
    any text Rancher sends back before that text becomes part of a message.
    """

    def __init__(self, settings: RancherSettings, location: ApiLocation, session=None):
        self.location = location
        self.session = session if session is not None else requests.Session()
        user, password = split_api_key(settings.access_key, settings.secret_key)
        if user or password:
            self.session.auth = (user, password)
        self.session.headers.update(
            {"Accept": "application/json", "User-Agent": f"ecr-agent/{__version__}"}
        )
        self.access_key = user
        # Passed with every request, because a session-level verify loses to
        # REQUESTS_CA_BUNDLE in requests' environment merge.
        self.verify = settings.ca_file or True
        self.secrets: set[str] = {password} if password else set()
        if password:
            # The Authorization header's value, which an echoing server may send back.
            self.secrets.add(base64.b64encode(f"{user}:{password}".encode()).decode())
        self.denied_hint = ""
        self.schemas_url: str | None = None
        self._allowed: dict[tuple[str, str], bool] = {}

    def get(self, url: str, action: str, params=None) -> dict:
        return self.request("GET", url, action, params=params)

    def put(self, url: str, action: str, body: dict) -> dict:
        return self.request("PUT", url, action, body=body)

    def post(self, url: str, action: str, body: dict) -> dict:
        return self.request("POST", url, action, body=body)

    def request(self, method: str, url: str, action: str, params=None, body=None) -> dict:
        """Send one request and return its JSON object; raise RancherError on failure."""
        url = self.local(url)
        try:
            response = self.session.request(
                method, url, params=params, json=body, timeout=TIMEOUT, verify=self.verify
            )
        except requests.RequestException as error:
            raise RancherError(f"{action} failed: {self._describe(error)}") from error

        if self.schemas_url is None and response.headers.get("X-API-Schemas"):
            self.schemas_url = response.headers["X-API-Schemas"]
        if response.status_code >= 400:
            raise self._http_error(response, action)
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            content_type = response.headers.get("Content-Type", "no Content-Type")
            raise RancherError(
                f"{action} failed: {url} returned {content_type}, not a JSON object; "
                "check that rancher.url points at the Rancher API",
                response.status_code,
            )
        return document

    def list_collection(self, url: str, action: str, params=None) -> list[dict]:
        """Return every resource of a collection, following ``pagination.next``."""
        resources: list[dict] = []
        seen = {url}
        for _ in range(MAX_PAGES):
            page = self.get(url, action, params=params)
            data = page.get("data")
            if page.get("type") != "collection" or not isinstance(data, list):
                raise RancherError(f"{action} failed: {url} did not return a collection")
            resources.extend(item for item in data if isinstance(item, dict))

            next_url = (page.get("pagination") or {}).get("next")
            if not next_url or next_url in seen:
                return resources
            seen.add(next_url)
            url, params = next_url, None  # the next link carries the filters
        raise RancherError(f"{action} failed: {url} has more than {MAX_PAGES} pages")

    def schema(self, type_name: str) -> dict | None:
        """Return the schema of ``type_name`` from the X-API-Schemas collection, if any."""
        if not self.schemas_url:
            return None
        url = f"{self.schemas_url.rstrip('/')}/{type_name}"
        try:
            return self.get(url, f"read the {type_name} schema")
        except RancherError as error:
            if error.status in (403, 404):
                return None
            raise

    def require(self, type_name: str, method: str, what: str) -> None:
        """Raise unless the schema shown to the key allows ``method`` on ``type_name``.

        Rancher shows each key only the methods its role allows, so a schema without
        PUT explains a refusal before the request is sent. Without a schema the
        request itself decides. Results are cached until ``forget_schemas``.
        """
        key = (type_name, method)
        if key not in self._allowed:
            schema = self.schema(type_name)
            field = "collectionMethods" if method == "POST" else "resourceMethods"
            self._allowed[key] = schema is None or method in (schema.get(field) or [])
        if not self._allowed[key]:
            raise RancherError(
                f"the API key may not {what}: the {type_name} schema Rancher shows it has "
                f"no {method}; {self.denied_hint}"
            )

    def forget_schemas(self) -> None:
        """Drop the cached permission results, because the key's role may change."""
        self._allowed.clear()

    def local(self, url: str) -> str:
        """Return ``url`` on the configured scheme, host and port.

        Rancher builds its links from the address it believes it has, which behind a
        proxy can be another host or plain http. The API key goes only to rancher.url.
        """
        parts = urlsplit(url)
        origin = urlsplit(self.location.origin)
        if (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc):
            return url
        if parts.netloc:
            log.debug("Rancher link %s rewritten to %s", url, self.location.origin)
        return urlunsplit((origin.scheme, origin.netloc, parts.path, parts.query, ""))

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, _REDACTED)
        return text

    def _http_error(self, response, action: str) -> RancherError:
        status = response.status_code
        summary = f"HTTP {status} {response.reason or ''}".rstrip()
        detail = self._error_detail(response)
        if status == 401:
            cause = (
                f"Rancher rejected the API key (HTTP 401): access key {self.access_key!r} is "
                "unknown, disabled or expired, or the secret key does not belong to it"
            )
        elif status in (403, 405):
            cause = f"Rancher denied it ({summary}{detail}); {self.denied_hint}"
        elif status == 404:
            cause = f"{summary} for {urlsplit(response.url).path}{detail}"
        else:
            cause = f"{summary}{detail}"
        return RancherError(f"{action} failed: {cause}", status)

    def _error_detail(self, response) -> str:
        """Return ": <message>" from a Rancher error body, redacted and shortened."""
        try:
            body = response.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        # Rancher's API framework puts rejected values into messages, so the
        # text is redacted before it can reach a log line or an Outcome.
        message = str(body.get("message") or body.get("code") or "")
        message = self.redact(" ".join(message.split()))
        if len(message) > _DETAIL_LIMIT:
            message = message[:_DETAIL_LIMIT] + "..."
        return f": {message}" if message else ""

    def _describe(self, error: requests.RequestException) -> str:
        origin = self.location.origin
        if isinstance(error, requests.exceptions.SSLError):
            return (
                f"TLS with {origin} failed ({self._reason(error)}); set rancher.ca_file "
                "to the CA that signed Rancher's certificate"
            )
        if isinstance(error, requests.exceptions.ConnectTimeout):
            return f"connection to {origin} timed out after {TIMEOUT[0]:.0f} s"
        if isinstance(error, requests.exceptions.ReadTimeout):
            return f"read from {origin} timed out after {TIMEOUT[1]:.0f} s"
        if isinstance(error, requests.exceptions.ConnectionError):
            return f"connection to {origin} failed ({self._reason(error)})"
        return f"request to {origin} failed ({self._reason(error)})"

    def _reason(self, error: Exception) -> str:
        # urllib3 nests the useful part ("Connection refused", "certificate verify
        # failed") at the end of a long repr.
        text = self.redact(str(error))
        match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text) or re.search(
            r"(certificate verify failed[^'\"()\]]*)", text
        )
        reason = match.group(1) if match else text
        return reason[:_DETAIL_LIMIT].strip()


class RancherTarget:
    """Publish ECR credentials to Rancher from a worker thread of its own.

    ``clock`` is a monotonic clock in seconds, ``rng`` the source of the retry jitter.
    ``on_result`` is called from the worker thread with one Outcome per host after
    every attempt.
    """

    name = NAME

    def __init__(
        self,
        settings: RancherSettings,
        retry_initial: float,
        retry_max: float,
        clock=time.monotonic,
        on_result=None,
        *,
        rng: random.Random | None = None,
        session=None,
    ):
        self.location = parse_url(settings.url)
        self._settings = settings
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._clock = clock
        self._on_result = on_result
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not a secret
        self._session = session

        self._condition = threading.Condition()
        self._latest: dict[str, Credentials] = {}  # newest credentials of every host seen
        self._pending: dict[str, int] = {}  # host -> generation it was last published in
        self._generation = 0
        self._attempted = 0  # newest generation that an attempt has covered
        self._failures = 0  # failed attempts in a row
        self._retry_at: float | None = None
        self._results: dict[str, Outcome] = {}  # the latest outcome of each host
        self._stopping = False
        self._thread: threading.Thread | None = None

        if urlsplit(self.location.url).scheme == "http":
            log.warning(
                "rancher.url %s uses plain http: the API key and the registry passwords "
                "cross the network unencrypted; use https",
                self.location.url,
            )

    def __repr__(self) -> str:
        return f"RancherTarget(url={self.location.url!r}, access_key={self._settings.access_key!r})"

    def publish(self, hosts: Mapping[str, Credentials]) -> list[Outcome]:
        """Record the newest credentials per host and wake the worker; never wait for Rancher."""
        if not hosts:
            return []
        with self._condition:
            if self._stopping:
                log.warning(
                    "Rancher target is closed; credentials for %s not sent", ", ".join(hosts)
                )
                return []
            self._generation += 1
            for host, credentials in hosts.items():
                self._latest[host] = credentials
                self._pending[host] = self._generation
            # New credentials go out now, whatever the backoff of older failures was.
            self._retry_at = None
            self._failures = 0
            self._start_worker()
            self._condition.notify_all()
        return []

    def flush(self, timeout: float) -> list[Outcome]:
        """Wait until the credentials published so far have been attempted once.

        Returns the latest outcome of every host published so far (a retry may have
        followed the first attempt), or an error outcome per waiting host if
        ``timeout`` seconds pass first. Failed hosts are not retried here.
        """
        deadline = self._clock() + timeout
        with self._condition:
            target = self._generation
            while self._attempted < target:
                remaining = deadline - self._clock()
                if remaining <= 0 or self._stopping:
                    reason = (
                        "the Rancher target was closed"
                        if self._stopping
                        else (f"timed out after {timeout:g} s waiting for Rancher")
                    )
                    return [Outcome(NAME, host, error=reason) for host in sorted(self._pending)]
                self._condition.wait(remaining)
            return [self._results[host] for host in sorted(self._results)]

    def results(self) -> list[Outcome]:
        """Return the latest outcome of every host attempted so far."""
        with self._condition:
            return [self._results[host] for host in sorted(self._results)]

    def close(self) -> None:
        """Stop the worker, waiting up to CLOSE_WAIT seconds for a request in flight."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(CLOSE_WAIT)
            if thread.is_alive():
                log.debug("Rancher worker still busy with a request; it stops after it")

    # -- the worker -------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ecr-agent-rancher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        client = RancherClient(self._settings, self.location, self._session)
        api = _make_api(client, self.location, self._settings.create_missing)
        try:
            while (batch := self._next_batch()) is not None:
                outcomes = self._attempt(api, client, batch)
                self._finish(batch, outcomes)
        finally:
            client.session.close()

    def _next_batch(self) -> "_Batch | None":
        """Wait until hosts are due and return them, or None once the target closes."""
        with self._condition:
            while not self._stopping:
                wait = None
                if self._pending and self._retry_at is not None:
                    wait = self._retry_at - self._clock()
                if self._pending and (wait is None or wait <= 0):
                    return _Batch(
                        self._generation,
                        dict(self._pending),
                        {host: self._latest[host] for host in self._pending},
                        dict(self._latest),
                    )
                self._condition.wait(wait)
            return None

    def _attempt(self, api, client: RancherClient, batch: "_Batch") -> list[Outcome]:
        client.secrets.update(credentials.password for credentials in batch.known.values())
        try:
            outcomes = api.publish(batch.pending, batch.known)
        except RancherError as error:
            outcomes = [Outcome(NAME, host, error=error.cause) for host in sorted(batch.pending)]
        except Exception as error:  # a bug must not end the worker: report and retry
            log.debug("Rancher update raised", exc_info=True)
            cause = f"unexpected {type(error).__name__}: {client.redact(str(error))}"
            outcomes = [Outcome(NAME, host, error=cause) for host in sorted(batch.pending)]

        reported = {outcome.host for outcome in outcomes}
        for host in sorted(set(batch.pending) - reported):
            outcomes.append(Outcome(NAME, host, error="no result for this host"))
        return outcomes

    def _finish(self, batch: "_Batch", outcomes: list[Outcome]) -> None:
        # Reported first, so that logs and on_result are complete when flush() returns.
        self._report(outcomes)
        with self._condition:
            failed = False
            for outcome in outcomes:
                self._results[outcome.host] = outcome
                if not outcome.ok:
                    failed = True
                elif self._pending.get(outcome.host) == batch.generations.get(outcome.host):
                    del self._pending[outcome.host]  # not published again meanwhile
            self._attempted = max(self._attempted, batch.generation)

            delay = None
            # A publish during the attempt already asked for an immediate retry.
            if failed and self._generation == batch.generation:
                self._failures += 1
                delay = self._backoff(self._failures)
                self._retry_at = self._clock() + delay
            elif not failed:
                self._failures = 0
                self._retry_at = None
            failures = self._failures
            self._condition.notify_all()

        if delay is not None:
            log.warning(
                "Rancher update failed %d time(s) in a row; next attempt in %.1f s",
                failures,
                delay,
            )

    def _backoff(self, failures: int) -> float:
        """Return a full-jitter delay: uniform up to retry_initial doubled per failure."""
        ceiling = min(self._retry_max, self._retry_initial * 2 ** min(failures - 1, 60))
        return self._rng.uniform(0, ceiling)

    def _report(self, outcomes: list[Outcome]) -> None:
        """Log failed and degraded hosts, then hand the outcomes to ``on_result``."""
        for outcome in outcomes:
            if outcome.error:
                log.error("Rancher update failed for %s: %s", outcome.host, outcome.error)
            elif outcome.warning:
                log.warning("Rancher update for %s: %s", outcome.host, outcome.warning)
        if self._on_result is None:
            return
        try:
            self._on_result(outcomes)
        except Exception:
            log.exception("recording the Rancher outcomes failed")


@dataclass(frozen=True)
class _Batch:
    """The hosts of one attempt, with the generation of each and every known host."""

    generation: int
    generations: dict[str, int]
    pending: dict[str, Credentials]
    known: dict[str, Credentials]


def _make_api(client: RancherClient, location: ApiLocation, create_missing: bool):
    # Imported here: both modules import this one for the client and the error type.
    if location.rancher2:
        from ecr_agent.rancher_v3 import ProjectCredentials

        return ProjectCredentials(client, location, create_missing)
    from ecr_agent.rancher_v1 import EnvironmentRegistries

    return EnvironmentRegistries(client, location, create_missing)
