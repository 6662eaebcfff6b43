"""Stored kinds that are not package revisions: Repository, Secret, PackageVariant(Set).

They behave like Kubernetes objects kept in etcd: a uid, a generation bumped on spec changes,
the global resourceVersion checked on every update (409 when stale), finalizers that turn a
delete into a ``deletionTimestamp``, a ``status`` subresource, and watch events in the same
ordered log as package revisions. Bodies cross this seam as JSON-shaped dicts (the wire shape).

Repository has hooks: creating one opens and indexes it (status ``Ready`` True/False with the
reason), its git coordinates and type are immutable, deleting it removes its revisions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from porch.api.names import object_uid, validate_object_meta
from porch.api.types import Repository
from porch.engine.sealing import SEALED
from porch.engine.selectors import LabelSelector, parse_object_filter
from porch.engine.watch import Watcher, WatchEvent
from porch.errors import (
    AlreadyExists,
    BadRequest,
    InternalError,
    Invalid,
    NotFound,
    PorchError,
    StaleResourceVersion,
)
from porch.store.types import Event, ObjectRow, Transaction

if TYPE_CHECKING:
    from porch.engine.engine import Engine


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind("Repository", "config.porch.kpt.dev", "v1alpha1", "repositories"),
        Kind("PackageVariant", "config.porch.kpt.dev", "v1alpha1", "packagevariants"),
        Kind("PackageVariantSet", "config.porch.kpt.dev", "v1alpha2", "packagevariantsets"),
        Kind("Secret", "", "v1", "secrets", has_status=False),
    )
}


def _ready(status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


class ObjectService:
    """CRUD + watch for the kinds in ``KINDS``; thread-safe like the engine it belongs to."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = engine.store

    def kind(self, kind: str) -> Kind:
        try:
            return KINDS[kind]
        except KeyError:
            raise NotFound(f"unknown kind {kind!r}") from None

    def _not_found(self, k: Kind, name: str) -> NotFound:
        return NotFound(f'{k.resource} "{name}" not found')

    # --- reads ---------------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        k = self.kind(kind)
        if not namespace:
            raise BadRequest("namespace must be specified")
        row = self._store.get_object(kind, namespace, name)
        if row is None:
            raise self._not_found(k, name)
        return self._shape(k, row)

    def _shape(self, k: Kind, row: ObjectRow, *, unseal: bool = True) -> dict[str, Any]:
        body = copy.deepcopy(row.body)
        if k.kind == "Secret" and unseal:
            if self._engine.sealer is not None:
                body = self._engine.sealer.open(body)
            elif SEALED in body:
                raise InternalError(
                    "stored secret is encrypted but the server has no encryption key"
                )
        body["apiVersion"], body["kind"] = k.api_version, k.kind
        body.setdefault("metadata", {})["resourceVersion"] = str(row.resource_version)
        return body

    def list(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> tuple[list[dict[str, Any]], str]:
        k = self.kind(kind)
        flt = parse_object_filter(namespace, field_selector) if field_selector else None
        labels = LabelSelector.parse(label_selector) if label_selector else None
        ns = flt.namespace if flt else namespace
        out = []
        for row in self._store.list_objects(kind, ns):
            body = self._shape(k, row)
            meta = body["metadata"]
            if flt and flt.name and meta.get("name") != flt.name:
                continue
            if labels and not labels.matches(meta.get("labels") or {}):
                continue
            out.append(body)
        return out, str(self._store.current_resource_version())

    # --- writes --------------------------------------------------------------------------------

    def _write(
        self, k: Kind, body: dict[str, Any], event: str, *, expect: int | None = None
    ) -> dict[str, Any]:
        """Store and announce ``body``. ``expect`` is checked inside the transaction (so it
        holds across replicas): 0 = the object must not exist yet, N = it must still be at
        resourceVersion N."""
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        stored = {key: v for key, v in body.items() if key not in ("apiVersion", "kind")}
        stored["metadata"] = {key: v for key, v in meta.items() if key != "resourceVersion"}
        result: dict[str, Any] = {}
        sealer = self._engine.sealer
        at_rest = sealer.seal(stored) if k.kind == "Secret" and sealer is not None else stored

        def work(txn: Transaction) -> list[Event]:
            rv = txn.next_resource_version()  # serialises writers: the check below holds
            if expect is not None:
                now = self._store.get_object(k.kind, ns, name)
                if expect == 0 and now is not None:
                    raise AlreadyExists(f'{k.resource} "{name}" already exists')
                if expect > 0 and (now is None or now.resource_version != expect):
                    raise StaleResourceVersion(
                        f'Operation cannot be fulfilled on {k.resource} "{name}": the object'
                        " has been modified; please apply your changes to the latest version"
                        " and try again"
                    )
            if event == "DELETED":
                txn.delete_object(k.kind, ns, name)
            else:
                txn.put_object(ObjectRow(k.kind, ns, name, at_rest, rv))
            row = ObjectRow(k.kind, ns, name, at_rest, rv)
            shaped = self._shape(k, row)
            result.update(shaped)
            # The log keeps what the store keeps (sealed); live watchers get the object.
            txn.add_event(Event(rv, event, k.kind, ns, name, self._shape(k, row, unseal=False)))
            return [Event(rv, event, k.kind, ns, name, shaped)]

        try:
            self._engine._commit(work)
        finally:
            if k.kind == "Repository":
                self._engine.repositories.invalidate(ns, name)
        return result

    def create(self, kind: str, body: dict[str, Any], *, user: str | None = None) -> dict[str, Any]:
        k = self.kind(kind)
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        if not meta.get("namespace"):
            raise BadRequest("namespace must be specified")
        if not meta.get("name"):
            if meta.get("generateName"):
                import secrets

                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            else:
                raise Invalid("metadata.name: Required value: name or generateName is required")
        validate_object_meta(meta)
        ns, name = meta["namespace"], meta["name"]
        if self._store.get_object(kind, ns, name) is not None:
            raise AlreadyExists(f'{k.resource} "{name}" already exists')
        meta["uid"] = object_uid(kind, k.api_version, ns, name)
        meta["creationTimestamp"] = self._engine._clock()
        meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        if kind == "Repository":
            return self._create_repository(k, body)
        return self._write(k, body, "ADDED", expect=0)

    def update(
        self,
        kind: str,
        body: dict[str, Any],
        *,
        subresource: str = "",
        user: str | None = None,
    ) -> dict[str, Any]:
        """PUT of the object or of its ``status``; the resourceVersion must be current."""
        k = self.kind(kind)
        meta = body.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        current = self.get(kind, ns, name)
        given = meta.get("resourceVersion", "")
        if not given:
            raise StaleResourceVersion("resourceVersion must be specified for an update")
        if given != current["metadata"]["resourceVersion"]:
            raise StaleResourceVersion(
                f'Operation cannot be fulfilled on {k.resource} "{name}": the object has been'
                " modified; please apply your changes to the latest version and try again"
            )
        new = copy.deepcopy(body)
        new_meta = new.setdefault("metadata", {})
        for fixed in ("uid", "creationTimestamp", "deletionTimestamp", "generation"):
            if fixed in current["metadata"]:
                new_meta[fixed] = current["metadata"][fixed]
            else:
                new_meta.pop(fixed, None)
        validate_object_meta(new_meta)
        if subresource == "status":
            merged = copy.deepcopy(current)
            merged["status"] = new.get("status", {})
            new = merged
        else:
            if k.has_status:
                new["status"] = current.get("status", {})
            if _spec_of(new) != _spec_of(current):
                new_meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if kind == "Repository" and not subresource:
            return self._update_repository(k, current, new)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            return self._delete_now(k, new)
        return self._write(k, new, "MODIFIED", expect=int(given))

    def delete(
        self, kind: str, namespace: str, name: str, *, user: str | None = None
    ) -> dict[str, Any]:
        k = self.kind(kind)
        current = self.get(kind, namespace, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            current["metadata"]["deletionTimestamp"] = self._engine._clock()
            return self._write(k, current, "MODIFIED")
        return self._delete_now(k, current)

    def _delete_now(self, k: Kind, current: dict[str, Any]) -> dict[str, Any]:
        meta = current["metadata"]
        if k.kind == "Repository":
            self._engine.remove_repository_revisions(meta["namespace"], meta["name"])
        return self._write(k, current, "DELETED")

    # --- Repository hooks ----------------------------------------------------------------------

    def _create_repository(self, k: Kind, body: dict[str, Any]) -> dict[str, Any]:
        from porch.engine.repositories import validate_repository

        repo = _repository(body)
        validate_repository(repo)
        body["status"] = {"conditions": [_ready("Unknown", "Reconciling", "opening")]}
        stored = self._write(k, body, "ADDED", expect=0)
        return self._open_repository(k, stored)

    def _update_repository(
        self, k: Kind, current: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        from porch.engine.repositories import immutable_changes, validate_repository

        repo = _repository(new)
        validate_repository(repo)
        changed = immutable_changes(_repository(current), repo)
        if changed:
            raise Invalid(f"spec.{changed[0]} is immutable")
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._delete_now(k, new)
        expect = int(current["metadata"]["resourceVersion"])
        stored = self._write(k, new, "MODIFIED", expect=expect)
        if new.get("spec") != current.get("spec"):
            ns, name = new["metadata"]["namespace"], new["metadata"]["name"]
            self._engine.repositories.forget(ns, name)
            if bool(repo.spec.deployment) != bool(_repository(current).spec.deployment):
                # Every revision shows status.deployment: they all change.
                self._engine.restamp_repository(ns, name)
            return self._open_repository(k, stored)
        return stored

    def _open_repository(self, k: Kind, stored: dict[str, Any]) -> dict[str, Any]:
        meta = stored["metadata"]
        try:
            self._engine.sync_repository(meta["namespace"], meta["name"])
            rows = self._store.list_revisions(meta["namespace"], repository=meta["name"])
            status = {
                "conditions": [_ready("True", "Ready", "Repository Ready")],
                "packageCount": len(rows),
                "observedGeneration": meta.get("generation", 1),
            }
        except PorchError as exc:
            status = {
                "conditions": [_ready("False", "Error", str(exc))],
                "observedGeneration": meta.get("generation", 1),
            }
        stored = copy.deepcopy(stored)
        # merged, so fields the background syncer keeps (lastFullSyncTime …) survive
        stored["status"] = {**(stored.get("status") or {}), **status}
        return self._write(k, stored, "MODIFIED")

    # --- watch ---------------------------------------------------------------------------------

    def watch(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> Watcher:
        self.kind(kind)
        flt = parse_object_filter(namespace, field_selector) if field_selector else None
        labels = LabelSelector.parse(label_selector) if label_selector else None
        ns = flt.namespace if flt else namespace

        def predicate(obj: dict[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            return (
                obj.get("kind") == kind
                and (ns is None or meta.get("namespace") == ns)
                and not (flt and flt.name and meta.get("name") != flt.name)
                and (labels is None or labels.matches(meta.get("labels") or {}))
            )

        def initial() -> list[WatchEvent]:
            items, _rv = self.list(
                kind, namespace, label_selector=label_selector, field_selector=field_selector
            )
            return [WatchEvent("ADDED", i, int(i["metadata"]["resourceVersion"])) for i in items]

        return self._engine.open_watch(predicate, initial, resource_version)


def _spec_of(body: dict[str, Any]) -> Any:
    rest = {k: v for k, v in body.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    return rest


def _repository(body: dict[str, Any]) -> Repository:
    try:
        return Repository.from_dict(body)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"invalid Repository: {exc}") from exc
