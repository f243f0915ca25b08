"""Rancher 2.x (API v3): ``dockerCredential`` and ``namespacedDockerCredential``.

A project contains registry credentials, which Rancher stores as Kubernetes secrets of
type ``kubernetes.io/dockerconfigjson``. The API presents each one with a
``registries`` map from registry address to ``{username, password, auth}``. Rancher
never returns ``password`` or ``auth`` (write-only fields), and a PUT replaces the
whole map, so every entry sent without its password loses it. A credential is
therefore updated only when this agent has the newest password of every host in it.
"""

import hashlib
import logging
import re
from collections.abc import Mapping

from ecr_agent.credentials import Credentials
from ecr_agent.rancher import NAME, ApiLocation, RancherClient, RancherError, normalize_host
from ecr_agent.targets import Outcome

log = logging.getLogger(__name__)

# The schema id and the collection name of the two credential types.
_KINDS = (
    ("dockerCredential", "dockercredentials"),
    ("namespacedDockerCredential", "namespaceddockercredentials"),
)
_NAME_LIMIT = 63  # a Kubernetes object name checked as a DNS label (RFC 1123)
_DESCRIPTION = "ECR registry credentials, renewed by ecr-agent"


def credential_name(host: str) -> str:
    """Return the name of a dedicated dockerCredential for ``host``.

    Lowercase letters, digits and dashes, starting with a letter and at most 63
    characters, so that Rancher's DNS label checks (RFC 1123 and the stricter
    RFC 1035) accept it. A name cut to length ends in a hash of the host.
    """
    name = re.sub(r"[^a-z0-9]+", "-", normalize_host(host)).strip("-")
    if not name[:1].isalpha():
        name = f"ecr-{name}"
    if len(name) > _NAME_LIMIT:
        digest = hashlib.sha256(host.encode()).hexdigest()[:8]
        name = f"{name[: _NAME_LIMIT - 9].rstrip('-')}-{digest}"
    return name


def _denied_hint(project: str) -> str:
    return (
        f"Rancher 2.x needs an API key of a user who is owner or member of project {project}, "
        "or who holds another role that may update secrets there (the read-only project "
        "role may not); create the key with no cluster scope"
    )


class ProjectCredentials:
    """Update the registry credentials of one Rancher 2.x project."""

    def __init__(self, client: RancherClient, location: ApiLocation, create_missing: bool):
        self.client = client
        self.location = location
        self.create_missing = create_missing
        self.hint = _denied_hint(str(location.project))
        client.denied_hint = self.hint
        self._collections: dict[str, str] = {}

    def publish(
        self, pending: Mapping[str, Credentials], known: Mapping[str, Credentials]
    ) -> list[Outcome]:
        """Push the pending hosts' credentials; return one Outcome per pending host.

        ``known`` contains the newest credentials of every host this agent renews,
        aliases included: the passwords a whole-credential update needs.
        """
        self.client.forget_schemas()
        self._find_collections()
        credentials = self._list_credentials()
        known_hosts = {normalize_host(host): host for host in known}
        wanted = {normalize_host(host): host for host in pending}

        updated: dict[str, list[str]] = {host: [] for host in pending}
        errors: dict[str, list[str]] = {host: [] for host in pending}
        for type_name, credential in credentials:
            addresses = list((credential.get("registries") or {}).keys())
            hosts = sorted({wanted[h] for h in map(normalize_host, addresses) if h in wanted})
            if not hosts:
                continue
            others = sorted(a for a in addresses if normalize_host(a) not in known_hosts)
            label = f"{type_name} {credential.get('id')}"
            if others:
                for host in hosts:
                    errors[host].append(self._mixed_message(label, others))
                continue
            try:
                self._update(type_name, credential, known, known_hosts)
            except RancherError as error:
                for host in hosts:
                    errors[host].append(error.cause)
                continue
            for host in hosts:
                updated[host].append(label)

        return [
            self._outcome(host, pending[host], updated[host], errors[host], credentials)
            for host in sorted(pending)
        ]

    def _find_collections(self) -> None:
        """Read the collection links of the project, or build them from its URL."""
        action = f"read Rancher project {self.location.project}"
        project = self.client.get(self.location.url, action)
        links = {key.lower(): value for key, value in (project.get("links") or {}).items()}
        for type_name, path in _KINDS:
            fallback = f"{self.location.project_url}/{path}"
            self._collections[type_name] = links.get(path) or fallback

    def _list_credentials(self) -> list[tuple[str, dict]]:
        found = []
        for type_name, _path in _KINDS:
            action = f"list the {type_name} resources of project {self.location.project}"
            for credential in self.client.list_collection(self._collections[type_name], action):
                found.append((type_name, credential))
        return found

    def _mixed_message(self, label: str, others: list[str]) -> str:
        return (
            f"{label} also holds {', '.join(others)}, whose passwords this agent does not "
            "have; it was left untouched, because Rancher never returns stored passwords "
            "and an update would erase them. Keep each ECR host in a registry credential "
            "of its own (rancher.create_missing = true creates them)"
        )

    def _update(self, type_name, credential, known, known_hosts) -> None:
        """Replace the credential's registries map, every entry with its password."""
        credential_id = credential.get("id")
        self.client.require(type_name, "PUT", f"update {type_name} resources")
        registries = {}
        for address, entry in (credential.get("registries") or {}).items():
            credentials = known[known_hosts[normalize_host(address)]]
            kept = {
                key: value
                for key, value in (entry or {}).items()
                if key not in ("username", "password", "auth")
            }
            registries[address] = kept | _entry(credentials)

        self_url = (credential.get("links") or {}).get("self")
        if not self_url:
            self_url = f"{self._collections[type_name]}/{credential_id}"
        action = f"update {type_name} {credential_id}"
        self.client.put(self_url, action, {"registries": registries})
        expiry = min(known[known_hosts[normalize_host(a)]].expires_at for a in registries)
        log.info(
            "Rancher %s %s updated for %s, valid until %s",
            type_name,
            credential_id,
            ", ".join(sorted(registries)),
            expiry.isoformat(),
        )

    def _outcome(self, host, credentials, updated, errors, listed) -> Outcome:
        """Decide the host's outcome, first creating a dedicated credential if asked."""
        if not updated and self.create_missing:
            try:
                self._create(host, credentials)
                updated.append("created")
            except RancherError as error:
                errors.append(error.cause)
        if errors:
            return Outcome(NAME, host, error="; ".join(errors))
        if updated:
            return Outcome(NAME, host)

        addresses = sorted(
            {address for _type, c in listed for address in (c.get("registries") or {})}
        )
        have = ", ".join(addresses) if addresses else "none"
        return Outcome(
            NAME,
            host,
            error=(
                f"no registry credential of project {self.location.project} holds {host} "
                f"(registries in its credentials: {have}); add one in Rancher or set "
                "rancher.create_missing = true"
            ),
        )

    def _create(self, host: str, credentials: Credentials) -> None:
        """Create a project-level dockerCredential that contains only ``host``."""
        # NOTE: the create request is checked against the stand-in server only;
        # Rancher 2.11 may also require the project's backing namespace here.
        self.client.require("dockerCredential", "POST", "create dockerCredential resources")
        name = credential_name(host)
        body = {
            "type": "dockerCredential",
            "name": name,
            "description": _DESCRIPTION,
            "registries": {host: _entry(credentials)},
        }
        action = f"create dockerCredential {name} for {host}"
        created = self.client.post(self._collections["dockerCredential"], action, body)
        log.info(
            "Rancher dockerCredential %s created for %s, valid until %s",
            created.get("id") or name,
            host,
            credentials.expires_at.isoformat(),
        )


def _entry(credentials: Credentials) -> dict:
    # auth is sent as well, so the stored entry does not depend on whether the
    # Rancher release derives it from username and password.
    return {
        "username": credentials.username,
        "password": credentials.password,
        "auth": credentials.docker_auth(),
    }
