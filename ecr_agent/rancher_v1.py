"""Rancher 1.6 (Cattle, API v1 and v2-beta): registries and their registry credentials.

An environment ("project" in the API) contains ``registry`` resources, each with a
``serverAddress``, and ``registryCredential`` resources that point at a registry by
``registryId`` and carry ``publicValue`` (user name), ``secretValue`` (password) and
``email``. The credentials of a registry are listed with the ``registryId=`` filter
and updated with a PUT to their ``links.self``.
"""

import logging
from collections.abc import Mapping

from ecr_agent.credentials import Credentials
from ecr_agent.rancher import NAME, ApiLocation, RancherClient, RancherError, normalize_host
from ecr_agent.targets import Outcome

log = logging.getLogger(__name__)

# Rancher 1.6 requires an email on every registry credential; ECR has none. The
# domain is reserved (RFC 2606), so the value never reaches a real mailbox.
PLACEHOLDER_EMAIL = "ecr-agent@example.invalid"
_GONE = {"removed", "removing", "purged", "purging"}
_DENIED_HINT = (
    "Rancher 1.6 needs an environment API key of this environment (API > Keys > "
    "Advanced Options > Add Environment API Key); an account API key works only for "
    "a user who may edit the environment, never with the read-only role"
)


class EnvironmentRegistries:
    """Update the registry credentials of one Rancher 1.6 environment."""

    def __init__(self, client: RancherClient, location: ApiLocation, create_missing: bool):
        self.client = client
        self.location = location
        self.create_missing = create_missing
        client.denied_hint = _DENIED_HINT
        self._registries_url = ""
        self._credentials_url = ""

    def publish(
        self, pending: Mapping[str, Credentials], known: Mapping[str, Credentials]
    ) -> list[Outcome]:
        """Push the pending hosts' credentials; return one Outcome per pending host."""
        self.client.forget_schemas()
        self._find_collections()
        registries = [
            registry
            for registry in self.client.list_collection(
                self._registries_url, "list the Rancher registries"
            )
            if registry.get("state") not in _GONE
        ]

        outcomes = []
        for host in sorted(pending):
            try:
                outcomes.append(self._publish_host(host, pending[host], registries))
            except RancherError as error:
                outcomes.append(Outcome(NAME, host, error=error.cause))
        return outcomes

    def _find_collections(self) -> None:
        """Read the collection links from the project (or the API root)."""
        where = self.location.project or "the API key's default"
        project = self.client.get(self.location.url, f"read Rancher environment {where}")
        links = {key.lower(): value for key, value in (project.get("links") or {}).items()}
        base = self.location.url
        self._registries_url = links.get("registries") or f"{base}/registries"
        self._credentials_url = links.get("registrycredentials") or f"{base}/registrycredentials"

    def _publish_host(self, host: str, credentials: Credentials, registries) -> Outcome:
        wanted = normalize_host(host)
        matches = [
            registry
            for registry in registries
            if normalize_host(str(registry.get("serverAddress") or "")) == wanted
        ]
        if not matches:
            return self._missing_registry(host, credentials, registries)

        active, skipped = [], []
        for registry in matches:
            state = registry.get("state") or "active"
            if state == "active":
                active.append(registry)
            else:
                skipped.append(f"{registry.get('id')} ({state})")
                log.warning(
                    "Rancher registry %s (%s) is %s, not active: skipped",
                    registry.get("id"),
                    registry.get("serverAddress"),
                    state,
                )
        if not active:
            raise RancherError(
                f"every Rancher registry for {host} is inactive: {', '.join(skipped)}; "
                "activate it in Rancher (Infrastructure > Registries)"
            )

        for registry in active:
            self._update_registry(host, credentials, registry)
        warning = None
        if skipped:
            warning = f"inactive Rancher registries for {host} skipped: {', '.join(skipped)}"
        return Outcome(NAME, host, warning=warning)

    def _missing_registry(self, host: str, credentials: Credentials, registries) -> Outcome:
        if self.create_missing:
            self._create_registry(host, credentials)
            return Outcome(NAME, host)
        addresses = sorted({str(registry.get("serverAddress")) for registry in registries})
        have = ", ".join(addresses) if addresses else "none"
        raise RancherError(
            f"no Rancher registry has serverAddress {host} (registries in Rancher: {have}); "
            "add it in Rancher (Infrastructure > Registries) or set rancher.create_missing = true"
        )

    def _update_registry(self, host: str, credentials: Credentials, registry: dict) -> None:
        registry_id = str(registry.get("id"))
        listed = self.client.list_collection(
            self._credentials_url,
            f"list the credentials of Rancher registry {registry_id}",
            params={"registryId": registry_id},
        )
        # Filtered again here: a server that ignores the filter must not make
        # every credential of the environment look like this registry's.
        found = [
            credential
            for credential in listed
            if str(credential.get("registryId")) == registry_id
            and credential.get("state") not in _GONE
        ]
        if not found:
            if not self.create_missing:
                raise RancherError(
                    f"Rancher registry {registry_id} ({registry.get('serverAddress')}) has no "
                    "registry credential; add one in Rancher or set rancher.create_missing = true"
                )
            self._create_credential(host, credentials, registry_id)
            return

        self.client.require("registryCredential", "PUT", "update registry credentials")
        for credential in found:
            self._update_credential(host, credentials, registry, credential)

    def _update_credential(self, host, credentials, registry, credential) -> None:
        credential_id = credential.get("id")
        self_url = (credential.get("links") or {}).get("self")
        if not self_url:
            self_url = f"{self._credentials_url}/{credential_id}"
        body = {
            "publicValue": credentials.username,
            "secretValue": credentials.password,
            "email": credential.get("email") or PLACEHOLDER_EMAIL,
        }
        self.client.put(self_url, f"update Rancher registry credential {credential_id}", body)
        log.info(
            "Rancher registry credential %s of registry %s (%s) updated for %s, valid until %s",
            credential_id,
            registry.get("id"),
            registry.get("serverAddress"),
            host,
            credentials.expires_at.isoformat(),
        )

    def _create_registry(self, host: str, credentials: Credentials) -> None:
        self.client.require("registry", "POST", "create registries")
        self.client.require("registryCredential", "POST", "create registry credentials")
        body = {"type": "registry", "serverAddress": host, "name": host}
        registry = self.client.post(
            self._registries_url, f"create a Rancher registry for {host}", body
        )
        log.info("Rancher registry %s created for %s", registry.get("id"), host)
        self._create_credential(host, credentials, str(registry.get("id")))

    def _create_credential(self, host: str, credentials: Credentials, registry_id: str) -> None:
        self.client.require("registryCredential", "POST", "create registry credentials")
        body = {
            "type": "registryCredential",
            "registryId": registry_id,
            "publicValue": credentials.username,
            "secretValue": credentials.password,
            "email": PLACEHOLDER_EMAIL,
        }
        action = f"create a credential for Rancher registry {registry_id}"
        credential = self.client.post(self._credentials_url, action, body)
        log.info(
            "Rancher registry credential %s created on registry %s for %s, valid until %s",
            credential.get("id"),
            registry_id,
            host,
            credentials.expires_at.isoformat(),
        )
