"""A stand-in Rancher API server on 127.0.0.1 for the Rancher target's tests.

It serves the two APIs the target speaks, shaped as Rancher presents them:

- Rancher 1.6 (Cattle) under ``/v1`` and ``/v2-beta``: ``registry`` and
  ``registryCredential`` resources of an environment ("project"), at
  ``/<api>/projects/<id>/...`` and, for the key's default environment, ``/<api>/...``.
- Rancher 2.x under ``/v3``: ``dockerCredential`` and ``namespacedDockerCredential``
  resources of a project at ``/v3/project/<cluster>:<project>/...``.

Collections carry ``type: collection``, ``resourceType``, ``data``, ``links.self``,
``pagination`` (``limit``, ``next``), ``filters``, ``sortLinks`` and ``createTypes``;
equality filters such as ``registryId=`` apply. Every response has the ``X-API-Schemas``
header, and ``.../schemas/<type>`` lists the methods the calling key may use. On v3,
``password`` and ``auth`` are write-only: never returned by GET, and a PUT that leaves
out a password erases it. Requests without a valid key get 401; writes with a
read-only key get 403. ``fail_next``, ``delay``, ``stop`` and ``start`` inject faults.
"""

import base64
import datetime
import itertools
import json
import re
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from ecr_agent.config import RancherSettings
from ecr_agent.credentials import Credentials
from ecr_agent.rancher import RancherTarget

V1_APIS = ("v1", "v2-beta")
V1_COLLECTIONS = {"registries": "registry", "registrycredentials": "registryCredential"}
V3_COLLECTIONS = {
    "dockercredentials": "dockerCredential",
    "namespaceddockercredentials": "namespacedDockerCredential",
}
_PLURAL = {
    "registry": "registries",
    "registryCredential": "registryCredentials",
    "dockerCredential": "dockercredentials",
    "namespacedDockerCredential": "namespaceddockercredentials",
}
# Stand-in secrets; tests assert that none of them reaches a log line or an Outcome.
ACCESS_KEY = "token-standin"
SECRET_KEY = "STAND-IN-RANCHER-SECRET-KEY-0001"
OLD_PASSWORD = "STAND-IN-OLD-ECR-PASSWORD"
OTHER_PASSWORD = "STAND-IN-DOCKER-HUB-PASSWORD"
HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
HOST_B = "210987654321.dkr.ecr.us-west-2.amazonaws.com"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PAGING = {"limit", "marker", "sort", "order"}


@dataclass
class ApiKey:
    secret: str
    read_only: bool = False


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RancherServer:
    """The server, its stored resources and its fault switches.

    ``page_size`` is the default number of resources per collection page (Rancher
    uses 100); small values make the client follow ``pagination.next``.
    """

    def __init__(self, access_key: str, secret_key: str, page_size: int = 100, tls=None):
        self.keys = {access_key: ApiKey(secret_key)}
        self.page_size = page_size
        self.tls = tls  # (certfile, keyfile) or None
        self.filter_schemas = True  # read-only keys see schemas without PUT and POST
        self.echo_values_in_errors = False  # 422 messages repeat the request body
        self.delay = 0.0  # seconds each response waits
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, str]] = []  # (method, path?query, auth scheme)
        self.v1: dict[str, dict[str, dict]] = {}
        self.v3: dict[str, dict[str, dict]] = {}
        self.default_project = "1a5"
        self._ids = itertools.count(1)
        self._failures_left = 0
        self._failure_status = 500
        self._reject_next_put = 0
        self._release: threading.Event | None = None
        self._held = threading.Condition(self.lock)
        self.held = 0  # requests waiting for the release event
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> "RancherServer":
        """Listen on 127.0.0.1 (the same port again after a stop)."""
        handler = type("Handler", (_Handler,), {"rancher": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # stop() must not wait for held responses
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() quick; shutdown() waits for one poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, so that connections are refused until ``start``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url_v1(self, project: str | None = "1a5", api: str = "v2-beta") -> str:
        return f"{self.base}/{api}" + (f"/projects/{project}" if project else "")

    def url_v3(self, project: str = "c-abcde:p-fghij", form: str = "projects") -> str:
        return f"{self.base}/v3/{form}/{project}"

    # -- switches and test data -----------------------------------------------------------

    def add_key(self, access_key: str, secret_key: str, read_only: bool = False) -> None:
        self.keys[access_key] = ApiKey(secret_key, read_only)

    def fail_next(self, count: int, status: int = 500) -> None:
        """Respond to the next ``count`` requests with ``status``."""
        with self.lock:
            self._failures_left, self._failure_status = count, status

    def hold(self) -> threading.Event:
        """Make every response wait until the returned event is set."""
        with self.lock:
            self._release = threading.Event()
            return self._release

    def wait_held(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Wait until ``count`` requests are being held."""
        with self._held:
            return self._held.wait_for(lambda: self.held >= count, timeout)

    def reject_next_put(self, count: int = 1) -> None:
        """Respond to the next ``count`` PUTs with a 422 validation error."""
        with self.lock:
            self._reject_next_put = count

    def add_registry(self, server_address: str, state: str = "active", project="1a5") -> str:
        registry_id = f"1sp{next(self._ids)}"
        registries = self._v1(project)["registry"]
        registries[registry_id] = {
            "id": registry_id,
            "type": "registry",
            "kind": "registry",
            "name": server_address,
            "serverAddress": server_address,
            "state": state,
            "accountId": project,
        }
        return registry_id

    def add_registry_credential(
        self, registry_id: str, secret: str, email="ops@example.com", project="1a5"
    ) -> str:
        credential_id = f"1c{next(self._ids)}"
        self._v1(project)["registryCredential"][credential_id] = {
            "id": credential_id,
            "type": "registryCredential",
            "kind": "registryCredential",
            "registryId": registry_id,
            "publicValue": "AWS",
            "secretValue": secret,
            "email": email,
            "state": "active",
            "accountId": project,
        }
        return credential_id

    def add_docker_credential(
        self, name: str, registries: dict, namespace: str | None = None, project="c-abcde:p-fghij"
    ) -> str:
        """Store a credential; ``registries`` maps address to (username, password)."""
        type_name = "namespacedDockerCredential" if namespace else "dockerCredential"
        owner = namespace or project.split(":")[1]
        credential_id = f"{owner}:{name}"
        self._v3(project)[type_name][credential_id] = {
            "id": credential_id,
            "type": type_name,
            "baseType": "namespacedSecret" if namespace else "secret",
            "name": name,
            "namespaceId": namespace,
            "projectId": project,
            "description": "",
            "registries": {
                address: _registry_entry({"username": user, "password": password})
                for address, (user, password) in registries.items()
            },
        }
        return credential_id

    def registry_credentials(self, project="1a5") -> dict[str, dict]:
        return self._v1(project)["registryCredential"]

    def registries(self, project="1a5") -> dict[str, dict]:
        return self._v1(project)["registry"]

    def docker_credentials(self, project="c-abcde:p-fghij") -> dict[str, dict]:
        stored = self._v3(project)
        return stored["dockerCredential"] | stored["namespacedDockerCredential"]

    def count(self, method: str, path_part: str = "") -> int:
        with self.lock:
            return sum(1 for m, path, _ in self.requests if m == method and path_part in path)

    def _v1(self, project: str) -> dict[str, dict]:
        return self.v1.setdefault(project, {"registry": {}, "registryCredential": {}})

    def _v3(self, project: str) -> dict[str, dict]:
        return self.v3.setdefault(
            project, {"dockerCredential": {}, "namespacedDockerCredential": {}}
        )

    # -- request handling (called from the handler threads) -------------------------------

    def handle(self, method: str, path: str, query: list, body, auth) -> tuple[int, object, str]:
        """Return (status, JSON document, X-API-Schemas URL) for one request."""
        segments = [part for part in path.split("/") if part]
        schemas_url = self._schemas_url(segments)
        with self.lock:
            self.requests.append(
                (method, path + ("?" + urlencode(query) if query else ""), auth[0])
            )
            if self._failures_left > 0:
                self._failures_left -= 1
                status = self._failure_status
                return status, _error(status, "ServerError", "injected failure"), schemas_url
            release = self._release
            if release is not None:
                self.held += 1
                self._held.notify_all()
        if release is not None:
            release.wait()
            with self.lock:
                self.held -= 1
        if self.delay:
            time.sleep(self.delay)

        try:
            key = self._authenticate(auth)
            if method in ("PUT", "POST", "DELETE") and key.read_only:
                raise ApiError(403, "PermissionDenied", "the API key may not change resources")
            with self.lock:
                document = self._route(method, segments, dict(query), body, key)
            return (201 if method == "POST" else 200), document, schemas_url
        except ApiError as error:
            return error.status, _error(error.status, error.code, error.message), schemas_url

    def _authenticate(self, auth) -> ApiKey:
        scheme, value = auth
        access, _, secret = value.partition(":")
        key = self.keys.get(access)
        if scheme not in ("basic", "bearer") or key is None or key.secret != secret:
            raise ApiError(401, "Unauthorized", "must authenticate")
        return key

    def _schemas_url(self, segments: list[str]) -> str:
        if segments[:1] == ["v3"]:
            if len(segments) >= 3 and segments[1] in ("project", "projects"):
                return f"{self.base}/v3/project/{segments[2]}/schemas"
            return f"{self.base}/v3/schemas"
        api = segments[0] if segments and segments[0] in V1_APIS else "v2-beta"
        if len(segments) >= 3 and segments[1] == "projects":
            return f"{self.base}/{api}/projects/{segments[2]}/schemas"
        return f"{self.base}/{api}/schemas"

    def _route(self, method, segments, query, body, key):
        if segments[:1] == ["v3"] and len(segments) >= 3 and segments[1] in ("project", "projects"):
            return self._route_v3(method, segments[2], segments[3:], query, body, key)
        if segments[:1] and segments[0] in V1_APIS:
            api, rest = segments[0], segments[1:]
            project = self.default_project
            if rest[:1] == ["projects"] and len(rest) >= 2:
                project, rest = rest[1], rest[2:]
                prefix = f"{self.base}/{api}/projects/{project}"
            else:
                prefix = f"{self.base}/{api}"
            return self._route_v1(method, api, project, prefix, rest, query, body, key)
        raise ApiError(404, "NotFound", "no such API")

    # -- Rancher 1.6 ----------------------------------------------------------------------

    def _route_v1(self, method, api, project, prefix, rest, query, body, key):
        if not rest:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "method not allowed")
            if project not in self.v1:
                raise ApiError(404, "NotFound", f"project {project} not found")
            return {
                "id": project,
                "type": "project",
                "name": "Default",
                "state": "active",
                "links": {
                    "self": prefix,
                    "registries": f"{prefix}/registries",
                    "registryCredentials": f"{prefix}/registrycredentials",
                    "schemas": f"{prefix}/schemas",
                },
                "actions": {},
            }
        if rest[0] == "schemas" and len(rest) == 2:
            return self._schema(rest[1], f"{prefix}/schemas", key)

        type_name = V1_COLLECTIONS.get(rest[0].lower())
        if type_name is None or project not in self.v1:
            raise ApiError(404, "NotFound", "not found")
        store = self.v1[project][type_name]
        url = f"{prefix}/{rest[0].lower()}"
        if len(rest) == 1 and method == "GET":
            return self._collection(type_name, store, url, query, self._show_v1)
        if len(rest) == 1 and method == "POST":
            created = self._create_v1(type_name, store, project, body)
            return self._show_v1(created, url)
        if len(rest) == 2 and rest[1] in store:
            if method == "GET":
                return self._show_v1(store[rest[1]], url)
            if method == "PUT":
                return self._show_v1(self._update_v1(type_name, store[rest[1]], body), url)
        if len(rest) == 2 and rest[1] not in store:
            raise ApiError(404, "NotFound", f"{type_name} {rest[1]} not found")
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    def _create_v1(self, type_name, store, project, body):
        if type_name == "registry":
            if not body.get("serverAddress"):
                raise ApiError(422, "MissingRequired", "serverAddress is required")
            registry_id = self.add_registry(body["serverAddress"], project=project)
            store[registry_id]["name"] = body.get("name") or body["serverAddress"]
            return store[registry_id]
        if body.get("registryId") not in self.v1[project]["registry"]:
            raise ApiError(422, "InvalidReference", "registryId")
        if not body.get("email"):
            raise ApiError(422, "MissingRequired", "email is required")
        credential_id = self.add_registry_credential(
            body["registryId"], body.get("secretValue", ""), body["email"], project
        )
        store[credential_id]["publicValue"] = body.get("publicValue", "")
        return store[credential_id]

    def _update_v1(self, type_name, resource, body):
        self._check_put(body)
        fields = {"name", "description"}
        if type_name == "registryCredential":
            fields |= {"publicValue", "secretValue", "email"}
            if "email" in body and not body["email"]:
                raise ApiError(422, "MissingRequired", "email is required")
        # Unknown and read-only fields are ignored, as Rancher 1.6 documents.
        resource.update({name: body[name] for name in fields if name in body})
        return resource

    def _show_v1(self, resource, collection_url):
        shown = {k: v for k, v in resource.items() if k != "secretValue"}
        self_url = f"{collection_url}/{resource['id']}"
        shown["links"] = {"self": self_url}
        if resource["type"] == "registry":
            base = collection_url.rsplit("/", 1)[0]
            shown["links"]["credentials"] = (
                f"{base}/registrycredentials?registryId={resource['id']}"
            )
        shown["actions"] = {
            "deactivate": f"{self_url}?action=deactivate",
            "remove": f"{self_url}?action=remove",
        }
        return shown

    # -- Rancher 2.x ----------------------------------------------------------------------

    def _route_v3(self, method, project, rest, query, body, key):
        prefix = f"{self.base}/v3/project/{project}"
        if project not in self.v3:
            raise ApiError(404, "NotFound", f"project {project} not found")
        if not rest:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "method not allowed")
            return {
                "id": project,
                "type": "project",
                "name": "Default",
                "state": "active",
                "links": {
                    "self": f"{self.base}/v3/projects/{project}",
                    "dockerCredentials": f"{prefix}/dockercredentials",
                    "namespacedDockerCredentials": f"{prefix}/namespaceddockercredentials",
                },
                "actions": {},
            }
        if rest[0] == "schemas" and len(rest) == 2:
            return self._schema(rest[1], f"{prefix}/schemas", key)

        type_name = V3_COLLECTIONS.get(rest[0].lower())
        if type_name is None:
            raise ApiError(404, "NotFound", "not found")
        store = self.v3[project][type_name]
        url = f"{prefix}/{rest[0].lower()}"
        if len(rest) == 1 and method == "GET":
            return self._collection(type_name, store, url, query, self._show_v3)
        if len(rest) == 1 and method == "POST":
            created = self._create_v3(type_name, store, project, body)
            # A create response repeats the submitted registries, passwords included.
            shown = self._show_v3(created, url)
            shown["registries"] = body["registries"]
            return shown
        if len(rest) == 2 and rest[1] in store:
            if method == "GET":
                return self._show_v3(store[rest[1]], url)
            if method == "PUT":
                return self._show_v3(self._update_v3(store[rest[1]], body), url)
        if len(rest) == 2 and rest[1] not in store:
            raise ApiError(404, "NotFound", f"{type_name} {rest[1]} not found")
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    def _create_v3(self, type_name, store, project, body):
        name = body.get("name") or ""
        if not _DNS_LABEL.match(name):
            raise ApiError(422, "InvalidFormat", f"invalid value {name}: not a DNS label")
        namespace = body.get("namespaceId")
        if type_name == "namespacedDockerCredential" and not namespace:
            raise ApiError(422, "MissingRequired", "namespaceId is required")
        owner = namespace or project.split(":")[1]
        if f"{owner}:{name}" in store:
            raise ApiError(409, "AlreadyExists", f"{name} already exists")
        registries = {
            address: (entry.get("username", ""), entry.get("password", ""))
            for address, entry in (body.get("registries") or {}).items()
        }
        credential_id = self.add_docker_credential(name, registries, namespace, project)
        store[credential_id]["description"] = body.get("description", "")
        return store[credential_id]

    def _update_v3(self, resource, body):
        self._check_put(body)
        if "registries" in body:
            # The whole map is replaced: an entry without a password loses it.
            resource["registries"] = {
                address: _registry_entry(entry or {})
                for address, entry in (body["registries"] or {}).items()
            }
        for name in ("description", "labels", "annotations"):
            if name in body:
                resource[name] = body[name]
        return resource

    def _show_v3(self, resource, collection_url):
        shown = dict(resource)
        shown["registries"] = {
            address: {k: v for k, v in entry.items() if k not in ("password", "auth")}
            for address, entry in resource["registries"].items()
        }
        self_url = f"{collection_url}/{resource['id']}"
        shown["links"] = {"self": self_url, "remove": self_url, "update": self_url}
        shown["actions"] = {}
        return shown

    # -- common ---------------------------------------------------------------------------

    def _check_put(self, body) -> None:
        if self._reject_next_put:
            self._reject_next_put -= 1
            message = "invalid value"
            if self.echo_values_in_errors:
                message = f"invalid value {json.dumps(body)}"
            raise ApiError(422, "InvalidFormat", message)

    def _collection(self, type_name, store, url, query, show):
        filters = {k: v for k, v in query.items() if k not in _PAGING}
        items = [
            resource
            for resource in sorted(store.values(), key=lambda r: r["id"])
            if all(str(resource.get(k)) == v for k, v in filters.items())
        ]
        limit = int(query.get("limit") or self.page_size)
        offset = int(query.get("marker", "m0")[1:])
        page = items[offset : offset + limit]

        pagination = {"limit": limit, "partial": offset + limit < len(items)}
        if offset + limit < len(items):
            pagination["next"] = (
                f"{url}?{urlencode(filters | {'limit': limit, 'marker': f'm{offset + limit}'})}"
            )
        self_url = f"{url}?{urlencode(query)}" if query else url
        filterable = ("id", "name", "state", "registryId", "serverAddress", "namespaceId")
        return {
            "type": "collection",
            "resourceType": type_name,
            "links": {"self": self_url},
            "createTypes": {type_name: url},
            "actions": {},
            "pagination": pagination,
            "sort": None,
            "sortLinks": {field: f"{url}?sort={field}" for field in ("id", "name", "state")},
            "filters": {
                field: ([{"modifier": "eq", "value": filters[field]}] if field in filters else None)
                for field in filterable
            },
            "data": [show(resource, url) for resource in page],
        }

    def _schema(self, type_name, schemas_url, key):
        if type_name not in _PLURAL:
            raise ApiError(404, "NotFound", f"schema {type_name} not found")
        writable = not (key.read_only and self.filter_schemas)
        return {
            "id": type_name,
            "type": "schema",
            "pluralName": _PLURAL[type_name],
            "links": {"self": f"{schemas_url}/{type_name}"},
            "resourceMethods": ["GET", "PUT", "DELETE"] if writable else ["GET"],
            "collectionMethods": ["GET", "POST"] if writable else ["GET"],
            "resourceFields": _FIELDS.get(type_name, {}),
        }


_FIELDS = {
    "registry": {
        "serverAddress": {"type": "string", "create": True, "update": False, "required": True},
    },
    "registryCredential": {
        "email": {"type": "string", "create": True, "update": True, "required": True},
        "publicValue": {"type": "string", "create": True, "update": True},
        "secretValue": {"type": "password", "create": True, "update": True},
        "registryId": {"type": "reference[registry]", "create": True, "required": True},
    },
    "dockerCredential": {
        "registries": {"type": "map[registryCredential]", "create": True, "update": True},
    },
    "namespacedDockerCredential": {
        "registries": {"type": "map[registryCredential]", "create": True, "update": True},
        "namespaceId": {"type": "reference[namespace]", "create": True, "required": True},
    },
}


def _registry_entry(entry: dict) -> dict:
    """Store one registries entry as Rancher does: auth derives from user and password."""
    stored = {k: v for k, v in entry.items() if k not in ("username", "password", "auth")}
    username, password = entry.get("username", ""), entry.get("password", "")
    stored |= {"username": username, "password": password}
    if username and password:
        stored["auth"] = base64.b64encode(f"{username}:{password}".encode()).decode()
    else:
        stored["auth"] = entry.get("auth", "")
    return stored


def _error(status: int, code: str, message: str) -> dict:
    return {"type": "error", "status": status, "code": code, "message": message}


class _Handler(BaseHTTPRequestHandler):
    rancher: RancherServer

    def do_GET(self):
        self._respond("GET")

    def do_PUT(self):
        self._respond("PUT")

    def do_POST(self):
        self._respond("POST")

    def do_DELETE(self):
        self._respond("DELETE")

    def _respond(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if method in ("PUT", "POST") and not isinstance(body, dict):
            self._send(400, _error(400, "InvalidBodyContent", "body is not a JSON object"), "")
            return
        status, document, schemas_url = self.rancher.handle(
            method, parts.path, parse_qsl(parts.query), body, self._auth()
        )
        self._send(status, document, schemas_url)

    def _auth(self) -> tuple[str, str]:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                return "basic", base64.b64decode(value).decode()
            except ValueError:
                return "invalid", ""
        return scheme.lower() or "none", value

    def _send(self, status: int, document, schemas_url: str) -> None:
        payload = json.dumps(document).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if schemas_url:
                self.send_header("X-API-Schemas", schemas_url)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a read timeout test)

    def log_message(self, format, *args):
        pass


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """Write a CA and a server certificate for 127.0.0.1; return (ca, cert, key) paths.

    Needs the ``cryptography`` package; callers skip when it is missing.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("ecr-agent test CA"))
        .issuer_name(name("ecr-agent test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    cert_path.write_bytes(cert.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


# -- helpers for the tests ------------------------------------------------------------------


def ecr_credentials(password: str, hours: float = 12.0) -> Credentials:
    now = datetime.datetime.now(datetime.UTC)
    return Credentials("AWS", password, now, now + datetime.timedelta(hours=hours))


class Results:
    """An ``on_result`` callback that keeps every call for the test to wait on."""

    def __init__(self):
        self.calls: list[list] = []
        self._condition = threading.Condition()

    def __call__(self, outcomes) -> None:
        with self._condition:
            self.calls.append(list(outcomes))
            self._condition.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        """Wait until ``predicate(calls)`` holds; False if ``timeout`` seconds pass."""
        with self._condition:
            return self._condition.wait_for(lambda: predicate(self.calls), timeout)

    def failures(self) -> int:
        with self._condition:
            return sum(1 for outcomes in self.calls if any(not o.ok for o in outcomes))


class Targets:
    """Make RancherTargets for a test and close them at its end."""

    def __init__(self):
        self.made: list[RancherTarget] = []

    def make(self, url: str, retry_initial=0.05, retry_max=0.2, **settings) -> RancherTarget:
        options = {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY} | settings
        extra = {k: options.pop(k) for k in ("on_result", "rng", "clock") if k in options}
        target = RancherTarget(
            RancherSettings(url=url, **options), retry_initial, retry_max, **extra
        )
        self.made.append(target)
        return target

    def close(self) -> None:
        for target in self.made:
            target.close()


def assert_no_secrets(*texts, secrets=()) -> None:
    """Assert that no stand-in secret appears in any of ``texts``."""
    known = (SECRET_KEY, OLD_PASSWORD, OTHER_PASSWORD, *secrets)
    for text in texts:
        for secret in known:
            assert secret not in str(text)
