"""The backend for kinds kept by ``engine.objects`` (Repository, PackageVariant(Set), Secret).

These behave like CRDs in etcd; the engine's ObjectService already does resourceVersion checks,
finalizers and the ``status`` subresource, so this adapter only fixes the namespace.
"""

from __future__ import annotations

import copy

from porch.apiserver.kinds import Body, Caller
from porch.engine import Engine
from porch.engine.watch import Watcher


class StoredBackend:
    def __init__(self, engine: Engine, kind: str) -> None:
        self._objects = engine.objects
        self.kind = kind

    def prepare(self, body: Body) -> Body:
        """Hook for kinds that normalise what a client sends (Secrets fold ``stringData``)."""
        return body

    def get(self, caller: Caller, namespace: str, name: str, subresource: str) -> Body:
        return self._objects.get(self.kind, namespace, name)

    def list(
        self, caller: Caller, namespace: str | None, *, label_selector: str, field_selector: str
    ) -> tuple[list[Body], str]:
        return self._objects.list(
            self.kind, namespace, label_selector=label_selector, field_selector=field_selector
        )

    def create(self, caller: Caller, namespace: str, body: Body) -> Body:
        return self._objects.create(self.kind, self.prepare(copy.deepcopy(body)), user=caller.name)

    def update(self, caller: Caller, namespace: str, body: Body, subresource: str) -> Body:
        body = self.prepare(copy.deepcopy(body))
        return self._objects.update(
            self.kind,
            body,
            subresource="status" if subresource == "status" else "",
            user=caller.name,
        )

    def delete(self, caller: Caller, namespace: str, name: str) -> Body:
        return self._objects.delete(self.kind, namespace, name, user=caller.name)

    def watch(
        self,
        caller: Caller,
        namespace: str | None,
        *,
        label_selector: str,
        field_selector: str,
        resource_version: str,
    ) -> Watcher:
        return self._objects.watch(
            self.kind,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
        )
