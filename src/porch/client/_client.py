"""``PorchClient``: typed, synchronous access to the Porch API over httpx.

The client speaks plain Kubernetes REST (JSON bodies, ``metav1.Status`` errors) so it works
against ``porch serve`` and against upstream Porch behind kube-apiserver alike. Tests inject an
``httpx.BaseTransport`` (``httpx.MockTransport`` or ``InProcessTransport`` over the ASGI app)
instead of a network connection; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from porch.api.types import PackageRevision, PackageRevisionResources, Repository
from porch.client._config import Connection, load_kubeconfig
from porch.client._errors import ClientError, StatusError, TransportError, error_from_response

PORCH = "/apis/porch.kpt.dev/v1alpha1"
CONFIG = "/apis/config.porch.kpt.dev/v1alpha1"
CONFIG_V1ALPHA2 = "/apis/config.porch.kpt.dev/v1alpha2"
CORE = "/api/v1"
ALL_NAMESPACES = ""  # pass as namespace to list across every namespace


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK or ERROR
    object: dict[str, Any]


def field_selector(fields: Mapping[str, str | int] | str | None) -> str:
    """``{"spec.repository": "demo"}`` → ``spec.repository=demo`` (a string passes through)."""
    if fields is None or isinstance(fields, str):
        return fields or ""
    return ",".join(f"{k}={v}" for k, v in fields.items())


class PorchClient:
    """One connection to one API server; ``namespace`` is the default for every call."""

    def __init__(
        self,
        base_url: str,
        *,
        namespace: str = "default",
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        verify: Any = True,
        timeout: float = 60.0,
        tls_server_name: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        # kubeconfig's tls-server-name: verify the certificate for this name, not the URL's host.
        self._extensions = {"sni_hostname": tls_server_name} if tls_server_name else {}
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "porchctl", **(headers or {})},
            verify=verify,
            timeout=timeout,
        )

    @classmethod
    def from_connection(
        cls, conn: Connection, *, transport: httpx.BaseTransport | None = None
    ) -> PorchClient:
        verify = conn.ssl_context() if transport is None else True
        return cls(
            conn.server,
            namespace=conn.namespace,
            transport=transport,
            headers=conn.headers(),
            verify=verify,
            tls_server_name=conn.tls_server_name,
        )

    @classmethod
    def from_kubeconfig(
        cls, path: Path | None = None, *, context: str = "", namespace: str = ""
    ) -> PorchClient:
        client = cls.from_connection(load_kubeconfig(path, context=context))
        if namespace:
            client.namespace = namespace
        return client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PorchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _ns(self, namespace: str | None) -> str:
        return self.namespace if namespace is None else namespace

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """Send one request; a non-2xx answer raises the ``StatusError`` for its code."""
        content = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if content is not None else {}
        try:
            response = self._http.request(
                method,
                path,
                content=content,
                params=params,
                headers=headers,
                extensions=self._extensions,
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.base_url}: {_why(exc)}") from None
        if response.status_code >= 400:
            raise error_from_response(response)
        try:
            data = response.json()
        except ValueError:
            raise ClientError(f"{method} {path}: the server answered with non-JSON") from None
        return data if isinstance(data, dict) else {}

    def _path(self, prefix: str, plural: str, namespace: str, name: str = "", sub: str = "") -> str:
        parts = [prefix]
        if namespace:
            parts += ["namespaces", namespace]
        parts.append(plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)

    def _list(
        self,
        prefix: str,
        plural: str,
        namespace: str,
        fields: Mapping[str, str | int] | str | None,
        labels: str,
    ) -> list[dict[str, Any]]:
        params = {}
        if fs := field_selector(fields):
            params["fieldSelector"] = fs
        if labels:
            params["labelSelector"] = labels
        data = self.request("GET", self._path(prefix, plural, namespace), params=params)
        items = data.get("items") or []
        return [i for i in items if isinstance(i, dict)]

    # --- packagerevisions -------------------------------------------------------------------

    def list_package_revisions(
        self,
        *,
        namespace: str | None = None,
        fields: Mapping[str, str | int] | str | None = None,
        labels: str = "",
    ) -> list[PackageRevision]:
        items = self._list(PORCH, "packagerevisions", self._ns(namespace), fields, labels)
        return [PackageRevision.from_dict(i) for i in items]

    def get_package_revision(self, name: str, *, namespace: str | None = None) -> PackageRevision:
        path = self._path(PORCH, "packagerevisions", self._ns(namespace), name)
        return PackageRevision.from_dict(self.request("GET", path))

    def create_package_revision(self, pr: PackageRevision) -> PackageRevision:
        ns = pr.metadata.namespace or self.namespace
        pr.metadata.namespace = ns
        path = self._path(PORCH, "packagerevisions", ns)
        return PackageRevision.from_dict(self.request("POST", path, body=pr.to_dict()))

    def update_package_revision(self, pr: PackageRevision) -> PackageRevision:
        ns = pr.metadata.namespace or self.namespace
        path = self._path(PORCH, "packagerevisions", ns, pr.metadata.name)
        return PackageRevision.from_dict(self.request("PUT", path, body=pr.to_dict()))

    def update_approval(self, pr: PackageRevision) -> PackageRevision:
        """PUT the ``approval`` subresource: the only way from Proposed to Published."""
        ns = pr.metadata.namespace or self.namespace
        path = self._path(PORCH, "packagerevisions", ns, pr.metadata.name, "approval")
        return PackageRevision.from_dict(self.request("PUT", path, body=pr.to_dict()))

    def patch_package_revision(
        self, name: str, patch: Mapping[str, Any], *, namespace: str | None = None, sub: str = ""
    ) -> PackageRevision:
        """JSON merge patch (RFC 7386); the server still checks a resourceVersion if given."""
        path = self._path(PORCH, "packagerevisions", self._ns(namespace), name, sub)
        data = self.request(
            "PATCH", path, body=dict(patch), content_type="application/merge-patch+json"
        )
        return PackageRevision.from_dict(data)

    def delete_package_revision(self, name: str, *, namespace: str | None = None) -> None:
        self.request("DELETE", self._path(PORCH, "packagerevisions", self._ns(namespace), name))

    def watch_package_revisions(
        self,
        *,
        namespace: str | None = None,
        fields: Mapping[str, str | int] | str | None = None,
        labels: str = "",
        resource_version: str = "",
        timeout_seconds: int = 0,
    ) -> Iterator[WatchEvent]:
        """Initial state as ADDED (unless resuming), then live events until the stream ends."""
        params = {"watch": "true", "allowWatchBookmarks": "true"}
        if fs := field_selector(fields):
            params["fieldSelector"] = fs
        if labels:
            params["labelSelector"] = labels
        if resource_version:
            params["resourceVersion"] = resource_version
        if timeout_seconds:
            params["timeoutSeconds"] = str(timeout_seconds)
        yield from self._stream(self._path(PORCH, "packagerevisions", self._ns(namespace)), params)

    # --- packagerevisionresources -----------------------------------------------------------

    def get_resources(self, name: str, *, namespace: str | None = None) -> PackageRevisionResources:
        path = self._path(PORCH, "packagerevisionresources", self._ns(namespace), name)
        return PackageRevisionResources.from_dict(self.request("GET", path))

    def update_resources(self, prr: PackageRevisionResources) -> PackageRevisionResources:
        """Replace the whole file set (files absent from ``resources`` are deleted)."""
        ns = prr.metadata.namespace or self.namespace
        path = self._path(PORCH, "packagerevisionresources", ns, prr.metadata.name)
        return PackageRevisionResources.from_dict(self.request("PUT", path, body=prr.to_dict()))

    # --- repositories and secrets -----------------------------------------------------------

    def list_repositories(self, *, namespace: str | None = None) -> list[Repository]:
        items = self._list(CONFIG, "repositories", self._ns(namespace), None, "")
        return [Repository.from_dict(i) for i in items]

    def get_repository(self, name: str, *, namespace: str | None = None) -> Repository:
        path = self._path(CONFIG, "repositories", self._ns(namespace), name)
        return Repository.from_dict(self.request("GET", path))

    def create_repository(self, repo: Repository) -> Repository:
        ns = repo.metadata.namespace or self.namespace
        repo.metadata.namespace = ns
        path = self._path(CONFIG, "repositories", ns)
        return Repository.from_dict(self.request("POST", path, body=repo.to_dict()))

    def update_repository(self, repo: Repository) -> Repository:
        ns = repo.metadata.namespace or self.namespace
        path = self._path(CONFIG, "repositories", ns, repo.metadata.name)
        return Repository.from_dict(self.request("PUT", path, body=repo.to_dict()))

    def delete_repository(self, name: str, *, namespace: str | None = None) -> None:
        self.request("DELETE", self._path(CONFIG, "repositories", self._ns(namespace), name))

    def create_secret(
        self,
        name: str,
        string_data: Mapping[str, str],
        *,
        type: str = "Opaque",
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Create a core v1 Secret; values are sent as ``stringData`` and never echoed."""
        ns = self._ns(namespace)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "type": type,
            "stringData": dict(string_data),
        }
        return self.request("POST", self._path(CORE, "secrets", ns), body=body)

    def delete_secret(self, name: str, *, namespace: str | None = None) -> None:
        self.request("DELETE", self._path(CORE, "secrets", self._ns(namespace), name))

    # --- any other kind, as plain dicts (PackageVariant, PackageVariantSet, ...) -------------
    # ``api`` is the group-version prefix, e.g. ``CONFIG`` or ``CONFIG_V1ALPHA2``.

    def list_objects(
        self, api: str, plural: str, *, namespace: str | None = None, labels: str = ""
    ) -> list[dict[str, Any]]:
        return self._list(api, plural, self._ns(namespace), None, labels)

    def get_object(
        self, api: str, plural: str, name: str, *, namespace: str | None = None
    ) -> dict[str, Any]:
        return self.request("GET", self._path(api, plural, self._ns(namespace), name))

    def create_object(self, api: str, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        ns = str((body.get("metadata") or {}).get("namespace") or self.namespace)
        return self.request("POST", self._path(api, plural, ns), body=dict(body))

    def update_object(
        self, api: str, plural: str, body: Mapping[str, Any], *, sub: str = ""
    ) -> dict[str, Any]:
        """PUT the object (or its ``sub``resource, e.g. ``status``); stale resourceVersion → 409."""
        meta = body.get("metadata") or {}
        ns = str(meta.get("namespace") or self.namespace)
        path = self._path(api, plural, ns, str(meta.get("name") or ""), sub)
        return self.request("PUT", path, body=dict(body))

    def delete_object(
        self, api: str, plural: str, name: str, *, namespace: str | None = None
    ) -> None:
        self.request("DELETE", self._path(api, plural, self._ns(namespace), name))

    def watch_objects(
        self,
        api: str,
        plural: str,
        *,
        namespace: str | None = None,
        labels: str = "",
        resource_version: str = "",
        timeout_seconds: int = 0,
    ) -> Iterator[WatchEvent]:
        """Like ``watch_package_revisions`` for any kind the server can watch."""
        params = {"watch": "true", "allowWatchBookmarks": "true"}
        if labels:
            params["labelSelector"] = labels
        if resource_version:
            params["resourceVersion"] = resource_version
        if timeout_seconds:
            params["timeoutSeconds"] = str(timeout_seconds)
        return self._stream(self._path(api, plural, self._ns(namespace)), params)

    def _stream(self, path: str, params: Mapping[str, str]) -> Iterator[WatchEvent]:
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=None, extensions=self._extensions
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                for line in response.iter_lines():
                    if line.strip():
                        event = orjson.loads(line)
                        yield WatchEvent(str(event.get("type")), event.get("object") or {})
        except httpx.HTTPError as exc:
            raise TransportError(f"watch on {self.base_url} ended: {_why(exc)}") from None


def _why(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


__all__ = [
    "ALL_NAMESPACES",
    "CONFIG",
    "CONFIG_V1ALPHA2",
    "PorchClient",
    "StatusError",
    "WatchEvent",
    "field_selector",
]
