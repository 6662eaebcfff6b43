"""What the REST layer knows about a served resource: names, verbs, columns and its backend.

Each resource kind lives in its own module (``packagerevisions.py``, ``secrets.py``, …) and
exports a ``ResourceType``; the generic handlers in ``rest.py`` do the HTTP side once for all.
Backends are synchronous (the engine is thread-safe and blocking); the REST layer runs them in
the thread pool. Bodies cross this seam as JSON-shaped dicts, as on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from porch.engine.watch import Watcher
from porch.errors import MethodNotSupported

Body = dict[str, Any]

ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Caller:
    """Who is asking; the name becomes the commit author and ``publishedBy``."""

    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    name: str
    cell: Callable[[Body], Any]
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description or self.name,
            "priority": self.priority,
        }


class Backend(Protocol):
    """The operations a kind supports; unsupported ones raise ``MethodNotSupported``."""

    def get(self, caller: Caller, namespace: str, name: str, subresource: str) -> Body: ...

    def list(
        self, caller: Caller, namespace: str | None, *, label_selector: str, field_selector: str
    ) -> tuple[list[Body], str]: ...

    def create(self, caller: Caller, namespace: str, body: Body) -> Body: ...

    def update(self, caller: Caller, namespace: str, body: Body, subresource: str) -> Body: ...

    def delete(self, caller: Caller, namespace: str, name: str) -> Body: ...

    def watch(
        self,
        caller: Caller,
        namespace: str | None,
        *,
        label_selector: str,
        field_selector: str,
        resource_version: str,
    ) -> Watcher: ...


class ReadOnly:
    """Mixin answering the write verbs with 405, as Porch does for ``packages``."""

    def create(self, caller: Caller, namespace: str, body: Body) -> Body:
        raise MethodNotSupported("create is not supported on this resource")

    def update(self, caller: Caller, namespace: str, body: Body, subresource: str) -> Body:
        raise MethodNotSupported("update is not supported on this resource")

    def delete(self, caller: Caller, namespace: str, name: str) -> Body:
        raise MethodNotSupported("delete is not supported on this resource")

    def watch(
        self,
        caller: Caller,
        namespace: str | None,
        *,
        label_selector: str,
        field_selector: str,
        resource_version: str,
    ) -> Watcher:
        raise MethodNotSupported("watch is not supported on this resource")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    backend: Backend
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    # The dataclass the OpenAPI schema is generated from; None means a free-form object.
    model: type | None = None
    list_kind: str = ""
    namespaced: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``packagerevisions.porch.kpt.dev`` as used in messages; core kinds have no suffix."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    def supports(self, verb: str) -> bool:
        return verb in self.verbs


def name_column(description: str = "Name must be unique within a namespace.") -> Column:
    return Column(
        "Name",
        lambda o: o.get("metadata", {}).get("name", ""),
        format="name",
        description=description,
    )


def spec_field(obj: Body, key: str, default: Any = None) -> Any:
    return (obj.get("spec") or {}).get(key, default)
