"""``OciRepository``: the PackageRepository protocol on an OCI registry (docs/oci.md).

Every mutation reads the tag it is about to move (GET manifest) and refuses with ``Conflict``
when its digest is not the one the caller last saw: compare-and-swap as far as the distribution
API allows (it has no conditional PUT, so a tiny window remains between read and write). Each
mutation returns an undo that puts the previous manifests back, again only if nobody moved the
tags meanwhile. A failure half-way through a multi-tag operation (publish) undoes the tags
already written before the error propagates, so a registry that fails mid-way leaves what was
published before intact.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from porch.api.types import Lifecycle
from porch.errors import AlreadyExists, Conflict, Forbidden, Invalid, NotFound, PorchError
from porch.repository.paths import check_package_files
from porch.repository.types import Author, Change, RevisionInfo
from porch.waits import WaitLock

from . import layout
from .client import CredentialSource, RegistryClient, digest_of

Clock = Callable[[], datetime]
_WORKING = (Lifecycle.DRAFT, Lifecycle.PROPOSED)
_CREATING_TASKS = ("init", "clone", "edit", "upgrade")
_FILES_CACHE = 128


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class _Tagged:
    name: str  # OCI repository
    tag: str
    digest: str
    body: bytes
    manifest: dict[str, Any]
    meta: layout.Meta | None


@dataclass(frozen=True)
class _Step:
    """One tag moved: what it held before (None = absent) and what it holds now."""

    name: str
    tag: str
    before: _Tagged | None
    after: str | None  # digest now under the tag; None = deleted


class OciRepository:
    """A Porch repository stored in an OCI registry (``spec.type: oci``)."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: CredentialSource = None,
        branch: str = "main",
        clock: Clock = _utc_now,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = RegistryClient(registry, credentials, timeout=timeout, transport=transport)
        self._prefix = self._client.prefix
        self._branch = branch
        self._clock = clock
        # Held across registry calls: waiting on it is waiting on the registry (porch.waits).
        self._lock = WaitLock(threading.RLock(), f"the lock of OCI registry {self._client.host}")
        self._files: OrderedDict[str, dict[str, str]] = OrderedDict()
        path = f"/{self._prefix}" if self._prefix else ""
        self._url = f"oci://{self._client.host}{path}"

    # --- PackageRepository: properties and reads --------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def branch(self) -> str:
        return self._branch

    @property
    def directory(self) -> str:
        return ""

    def close(self) -> None:
        self._client.close()

    def fetch(self) -> None:
        self._client.check()

    def version(self) -> str:
        import hashlib

        digest = hashlib.sha256()
        for name, tags in sorted(self._package_tags().items()):
            for tag in sorted(tags):
                current = self._client.head_manifest(name, tag)
                digest.update(f"{name}:{tag}={current}\n".encode())
        return digest.hexdigest()

    def list_revisions(self) -> list[RevisionInfo]:
        out: list[RevisionInfo] = []
        for name, tags in sorted(self._package_tags().items()):
            package = layout.package_of(self._prefix, name)
            assert package is not None
            infos = [self._info(package, t) for t in self._read_tags(name, tags)]
            published = {i.workspace for i in infos if i is not None and i.revision > 0}
            for info in infos:
                if info is None:
                    continue
                if info.lifecycle in _WORKING and info.workspace in published:
                    continue  # an interrupted publish: recover() removes the working tag
                out.append(info)
        return out

    def recover(self) -> list[str]:
        """Finish publishes interrupted after ``v<N>`` was written (see docs/oci.md).

        A working tag whose workspace and layer equal a published revision's is deleted, and
        the placeholder moves to that revision unless it already mirrors a newer one. Returns
        one line per tag changed.
        """
        notes: list[str] = []
        with self._lock:
            for name, tags in sorted(self._package_tags().items()):
                tagged = self._read_tags(name, tags)
                versions = {
                    t.digest: (t.meta.revision, t)
                    for t in tagged
                    if t.meta is not None
                    and t.meta.revision > 0
                    and layout.parse_tag(t.tag, self._branch) == ("published", t.meta.revision)
                }
                holder = next((t for t in tagged if t.tag == self._branch), None)
                for work in tagged:
                    if work.meta is None or work.meta.lifecycle not in _WORKING:
                        continue
                    if not work.tag.startswith(layout.WORKING_PREFIX):
                        continue
                    done = [
                        (n, v)
                        for n, v in versions.values()
                        if v.meta is not None
                        and v.meta.workspace == work.meta.workspace
                        and _layer(v) == _layer(work)
                    ]
                    if not done:
                        continue
                    number, version = max(done, key=lambda pair: pair[0])
                    mirrored = 0
                    if holder is not None and holder.meta is not None:
                        mirrored = versions.get(holder.meta.source, (0, holder))[0]
                    if mirrored < number and version.meta is not None:
                        meta = replace(
                            version.meta,
                            workspace=self._branch,
                            revision=-1,
                            tasks=(),
                            lifecycle=(
                                holder.meta.lifecycle
                                if holder is not None and holder.meta is not None
                                else Lifecycle.PUBLISHED
                            ),
                            source=version.digest,
                        )
                        body = self._rebuild(version, meta.annotations(self._branch, None))
                        self._client.put_manifest(name, self._branch, body)
                        holder = self._get(name, self._branch)
                        notes.append(f"moved tag {name}:{self._branch} to {version.tag}")
                    self._client.delete_manifest(name, work.digest)
                    notes.append(
                        f"deleted tag {name}:{work.tag}: already published as {version.tag}"
                    )
        return notes

    def _read_tags(self, name: str, tags: list[str]) -> list[_Tagged]:
        out = []
        for tag in sorted(tags):
            tagged = self._get(name, tag)
            if tagged is not None and tagged.meta is not None:
                out.append(tagged)  # else deleted meanwhile, or not written by porch
        return out

    def read_files(self, info: RevisionInfo) -> dict[str, str]:
        name = layout.repository_name(self._prefix, info.package)
        tagged = self._get(name, info.commit) if info.commit.startswith("sha256:") else None
        if tagged is None and info.placeholder:
            tagged = self._get(name, self._branch)
        if tagged is None:
            raise NotFound(f"package revision {info.package}/{info.workspace} not found")
        layers = tagged.manifest.get("layers") or []
        if not layers:
            raise Invalid(f"manifest {tagged.digest} of {name} has no layers")
        layer = str(layers[-1]["digest"])
        with self._lock:
            cached = self._files.get(layer)
            if cached is not None:
                self._files.move_to_end(layer)
                return dict(cached)
        files = layout.unpack(self._client.get_blob(name, layer))
        with self._lock:
            self._files[layer] = files
            while len(self._files) > _FILES_CACHE:
                self._files.popitem(last=False)
        return dict(files)

    # --- PackageRepository: writes ----------------------------------------------------------

    def write(
        self,
        *,
        package: str,
        workspace: str,
        files: Mapping[str, str],
        lifecycle: Lifecycle,
        task: Mapping[str, Any] | None,
        author: Author,
        base: RevisionInfo | None,
    ) -> Change:
        if lifecycle not in _WORKING:
            raise Invalid(f"cannot write a {lifecycle.value} package revision")
        check_package_files(files)
        name = layout.repository_name(self._prefix, package)
        if workspace == self._branch:
            raise AlreadyExists(f"workspace {workspace!r} is the placeholder of {package}")
        tag = layout.working_tag(workspace)
        with self._lock:
            current = self._get(name, tag)
            if base is None:
                if current is not None:
                    raise AlreadyExists(f"package revision {package}/{workspace} already exists")
                tasks: tuple[dict[str, Any], ...] = (dict(task),) if task else ()
            else:
                if base.lifecycle not in _WORKING:
                    raise Invalid(f"cannot write on top of a {base.lifecycle.value} revision")
                self._expect(current, base.commit, f"{package}/{workspace}")
                tasks = base.tasks
                if task and task.get("type") in _CREATING_TASKS:
                    tasks = (dict(task),)
            meta = layout.Meta(
                package=package,
                workspace=workspace,
                lifecycle=lifecycle,
                revision=0,
                tasks=tasks,
                author=author.name,
                author_email=author.email,
                created=self._clock(),
                source="",
            )
            layer, plain = layout.pack(files)
            layer_digest = self._client.put_blob(name, layer)
            history = "kpt:" + orjson.dumps(dict(task) if task else {}).decode()
            config = layout.config_blob(digest_of(plain), history)
            config_digest = self._client.put_blob(name, config)
            body = layout.manifest(
                (config_digest, len(config)),
                (layer_digest, len(layer)),
                meta.annotations(tag, task),
            )
            digest = self._client.put_manifest(name, tag, body)
            with self._lock:
                self._files[layer_digest] = dict(files)
            steps = [_Step(name, tag, current, digest)]
            info = self._working_info(package, meta, digest, tag)
        return Change(info, self._undo(steps))

    def set_lifecycle(self, info: RevisionInfo, lifecycle: Lifecycle) -> Change:
        if lifecycle == info.lifecycle:
            return Change(info)
        pair = {info.lifecycle, lifecycle}
        if pair != set(_WORKING) and pair != {Lifecycle.PUBLISHED, Lifecycle.DELETION_PROPOSED}:
            raise Invalid(
                f"cannot change lifecycle from {info.lifecycle.value} to {lifecycle.value}"
            )
        name = layout.repository_name(self._prefix, info.package)
        tag = self._tag_of(info)
        with self._lock:
            current = self._get(name, tag)
            self._expect(current, info.commit, f"{info.package}/{info.workspace}")
            assert current is not None and current.meta is not None
            meta = replace(current.meta, lifecycle=lifecycle)
            body = self._rebuild(current, meta.annotations(tag, _task_of(current)))
            digest = self._client.put_manifest(name, tag, body)
            steps = [_Step(name, tag, current, digest)]
            commit = info.commit if info.placeholder else digest
            new_info = replace(info, lifecycle=lifecycle, commit=commit)
        return Change(new_info, self._undo(steps))

    def publish(self, info: RevisionInfo, *, revision: int, author: Author) -> Change:
        if info.lifecycle not in _WORKING:
            raise Invalid(f"cannot publish a {info.lifecycle.value} package revision")
        if revision <= 0:
            raise Invalid(f"revision must be positive, not {revision}")
        name = layout.repository_name(self._prefix, info.package)
        working = layout.working_tag(info.workspace)
        vtag = layout.version_tag(revision)
        with self._lock:
            current = self._get(name, working)
            self._expect(current, info.commit, f"{info.package}/{info.workspace}")
            assert current is not None and current.meta is not None
            if self._client.head_manifest(name, vtag) is not None:
                raise AlreadyExists(f"package revision {info.package}/{vtag} already exists")
            now = self._clock()
            meta = replace(
                current.meta,
                lifecycle=Lifecycle.PUBLISHED,
                revision=revision,
                author=author.name,
                author_email=author.email,
                created=now,
            )
            steps: list[_Step] = []
            try:
                body = self._rebuild(current, meta.annotations(vtag, None))
                digest = self._client.put_manifest(name, vtag, body)
                steps.append(_Step(name, vtag, None, digest))
                holder = self._get(name, self._branch)
                holder_meta = replace(
                    meta,
                    workspace=self._branch,
                    revision=-1,
                    tasks=(),
                    lifecycle=(
                        holder.meta.lifecycle
                        if holder is not None and holder.meta is not None
                        else Lifecycle.PUBLISHED
                    ),
                    source=digest,
                )
                holder_body = self._rebuild(current, holder_meta.annotations(self._branch, None))
                holder_digest = self._client.put_manifest(name, self._branch, holder_body)
                steps.append(_Step(name, self._branch, holder, holder_digest))
                self._client.delete_manifest(name, current.digest)
                steps.append(_Step(name, working, current, None))
            except PorchError:
                self._revert(steps, quiet=True)
                raise
            new_info = RevisionInfo(
                package=info.package,
                workspace=info.workspace,
                revision=revision,
                lifecycle=Lifecycle.PUBLISHED,
                commit=digest,
                ref=vtag,
                tasks=current.meta.tasks,
                published_by=author.email,
                published_at=now,
            )
        return Change(new_info, self._undo(steps))

    def delete(self, info: RevisionInfo) -> Change:
        name = layout.repository_name(self._prefix, info.package)
        if info.lifecycle in _WORKING or info.placeholder:
            tag = self._tag_of(info)
        else:
            tag = layout.version_tag(info.revision) if info.revision > 0 else ""
            if info.ref != tag:
                raise Forbidden(
                    "cannot delete package tagged with a tag that is not specific to the "
                    f"package: {info.ref}"
                )
        with self._lock:
            current = self._get(name, tag)
            if current is None:
                raise NotFound(f"package revision {info.package}/{info.workspace} not found")
            self._expect(current, info.commit, f"{info.package}/{info.workspace}")
            self._client.delete_manifest(name, current.digest)
            steps = [_Step(name, tag, current, None)]
        return Change(None, self._undo(steps))

    # --- helpers ---------------------------------------------------------------------------

    def _package_tags(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in self._client.catalog():
            if layout.package_of(self._prefix, name) is None:
                continue
            tags = [t for t in self._client.tags(name) if layout.parse_tag(t, self._branch)]
            if tags:
                out[name] = tags
        return out

    def _get(self, name: str, reference: str) -> _Tagged | None:
        got = self._client.get_manifest(name, reference)
        if got is None:
            return None
        digest, body = got
        manifest, annotations, _layer = layout.parse_manifest(body)
        return _Tagged(name, reference, digest, body, manifest, layout.meta_from(annotations))

    def _info(self, package: str, tagged: _Tagged | None) -> RevisionInfo | None:
        if tagged is None:
            return None
        meta = tagged.meta
        parsed = layout.parse_tag(tagged.tag, self._branch)
        if meta is None or parsed is None:
            return None
        kind, value = parsed
        if kind == "working":
            if meta.lifecycle not in _WORKING:
                return None
            return self._working_info(package, meta, tagged.digest, tagged.tag)
        if meta.lifecycle not in (Lifecycle.PUBLISHED, Lifecycle.DELETION_PROPOSED):
            return None
        if kind == "placeholder":
            return RevisionInfo(
                package=package,
                workspace=self._branch,
                revision=-1,
                lifecycle=meta.lifecycle,
                commit=meta.source or tagged.digest,
                ref=self._branch,
                published_by=meta.author_email,
                published_at=meta.created,
            )
        assert isinstance(value, int)
        return RevisionInfo(
            package=package,
            workspace=meta.workspace or tagged.tag,
            revision=value,
            lifecycle=meta.lifecycle,
            commit=tagged.digest,
            ref=tagged.tag,
            tasks=meta.tasks,
            published_by=meta.author_email,
            published_at=meta.created,
        )

    @staticmethod
    def _working_info(package: str, meta: layout.Meta, digest: str, tag: str) -> RevisionInfo:
        return RevisionInfo(
            package=package,
            workspace=meta.workspace,
            revision=0,
            lifecycle=meta.lifecycle,
            commit=digest,
            ref=tag,
            tasks=meta.tasks,
            published_by=meta.author_email,
            published_at=meta.created,
        )

    def _tag_of(self, info: RevisionInfo) -> str:
        if info.placeholder:
            return self._branch
        if info.lifecycle in _WORKING:
            return layout.working_tag(info.workspace)
        if info.revision > 0:
            return layout.version_tag(info.revision)
        raise NotFound(f"package revision {info.package}/{info.workspace} has no porch tag")

    def _expect(self, current: _Tagged | None, commit: str, what: str) -> None:
        if current is None:
            raise Conflict(f"package revision {what} was deleted concurrently")
        seen = current.digest
        if current.tag == self._branch and current.meta is not None and current.meta.source:
            seen = current.meta.source
        if seen != commit:
            raise Conflict(f"package revision {what} was modified concurrently")

    def _rebuild(self, current: _Tagged, annotations: dict[str, str]) -> bytes:
        return layout.manifest(
            (str(current.manifest["config"]["digest"]), int(current.manifest["config"]["size"])),
            (
                str(current.manifest["layers"][-1]["digest"]),
                int(current.manifest["layers"][-1]["size"]),
            ),
            annotations,
        )

    def _revert(self, steps: list[_Step], *, quiet: bool = False) -> None:
        """Put each tag back, newest step first, only where the tag still holds our write."""
        errors: list[PorchError] = []
        for step in reversed(steps):
            try:
                now = self._client.head_manifest(step.name, step.tag)
                if now != step.after:
                    raise Conflict(f"tag {step.name}:{step.tag} was moved concurrently")
                if step.before is not None:
                    self._client.put_manifest(step.name, step.tag, step.before.body)
                elif step.after is not None:
                    self._client.delete_manifest(step.name, step.after)
            except PorchError as exc:
                errors.append(exc)
        if errors and not quiet:
            raise errors[0]

    def _undo(self, steps: list[_Step]) -> Callable[[], None]:
        frozen = list(steps)

        def undo() -> None:
            with self._lock:
                self._revert(frozen)

        return undo


def _layer(tagged: _Tagged) -> str:
    layers = tagged.manifest.get("layers") or []
    return str(layers[-1].get("digest", "")) if layers else ""


def _task_of(tagged: _Tagged) -> dict[str, Any] | None:
    raw = (tagged.manifest.get("annotations") or {}).get(layout.TASK)
    if not raw:
        return None
    parsed = orjson.loads(raw)
    return dict(parsed) if isinstance(parsed, dict) else None
