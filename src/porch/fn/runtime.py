"""Image names and the runtime chain (spec §7.1): builtin → exec → remote runner.

Each link raises :class:`FunctionNotFound` for an image it does not know; only then is the next
link tried. Any other outcome (success, failure, timeout) is final.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from porch.fn.types import (
    DEFAULT_IMAGE_PREFIX,
    Builtin,
    FunctionFailure,
    FunctionNotFound,
    FunctionOutput,
    FunctionSpec,
    ResourceList,
    Runtime,
)

CATALOG_PREFIXES = (DEFAULT_IMAGE_PREFIX, "gcr.io/kpt-fn/")
"""Registries whose catalog images our builtins stand in for."""

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def resolve_image(image: str, default_prefix: str = DEFAULT_IMAGE_PREFIX) -> str:
    """kpt's resolution: a bare name gets the default prefix, an untagged image ``:latest``."""
    image = image.strip()
    if not image:
        raise ValueError("function image must not be empty")
    if "/" not in image:
        image = default_prefix.rstrip("/") + "/" + image
    last = image.rsplit("/", 1)[-1]
    if ":" not in last and not _DIGEST.search(image):
        image += ":latest"
    return image


@dataclass(frozen=True)
class ImageRef:
    repository: str  # everything before the tag/digest
    name: str  # last path segment
    tag: str  # "" when a digest is given
    digest: str


def parse_image(image: str) -> ImageRef:
    digest = ""
    m = _DIGEST.search(image)
    if m:
        digest = m.group(0)[1:]
        image = image[: m.start()]
    head, _, last = image.rpartition("/")
    tag = ""
    if ":" in last:
        last, tag = last.split(":", 1)
    repository = f"{head}/{last}" if head else last
    return ImageRef(repository=repository, name=last, tag=tag, digest=digest)


SDK_SORTED = frozenset(
    ("set-namespace", "set-labels", "apply-replacements", "set-image", "kubeconform")
)
"""Catalog functions built on kpt-functions-sdk, which sorts its output items by
``apiVersion kind namespace name`` before writing them."""


def sdk_sort_key(item: Any) -> str:
    meta = item.get("metadata") if isinstance(item, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    return (
        f"{item.get('apiVersion') or ''} {item.get('kind') or ''} "
        f"{meta.get('namespace') or ''} {meta.get('name') or ''}"
    )


class BuiltinRuntime:
    """In-process Python functions, found by catalog name under the catalog registries."""

    def __init__(
        self,
        functions: Mapping[str, Builtin] | None = None,
        prefixes: Sequence[str] = CATALOG_PREFIXES,
    ) -> None:
        if functions is None:
            from porch.fn.registry import builtins

            functions = builtins()
        self._functions = dict(functions)
        self._sorted = {
            id(fn) for name, fn in self._functions.items() if name.split(":")[0] in SDK_SORTED
        }
        self._prefixes = tuple(p.rstrip("/") + "/" for p in prefixes)

    def lookup(self, image: str) -> Builtin | None:
        """The builtin for ``image``: a version registered as ``name:tag`` wins over ``name``."""
        ref = parse_image(image)
        key = ref.repository if image.startswith("builtins/") else ""
        if not key:
            for prefix in self._prefixes:
                if ref.repository == prefix + ref.name:
                    key = ref.name
                    break
        if not key:
            return None
        if ref.tag and f"{key}:{ref.tag}" in self._functions:
            return self._functions[f"{key}:{ref.tag}"]
        return self._functions.get(key)

    def list_tags(self, image: str) -> list[str]:
        """Tags a ``tag:`` semver constraint may pick for ``image``: the catalog versions the
        builtin stands in for (``fn/data/catalog-versions.json``); none for other images."""
        ref = parse_image(image)
        if not any(ref.repository == p + ref.name for p in self._prefixes):
            return []
        if ref.name not in self._functions:
            return []
        return list(_catalog_versions().get(ref.name, []))

    def run(self, spec: FunctionSpec, rl: ResourceList, *, timeout: float) -> FunctionOutput:
        fn = self.lookup(spec.image) if spec.image else None
        if fn is None:
            raise FunctionNotFound(spec.image or spec.exec_path)
        work = ResourceList(
            items=copy.deepcopy(rl.items),
            function_config=copy.deepcopy(rl.function_config),
            results=[],
        )
        try:
            if _takes_timeout(fn):
                fn(work, timeout=timeout)  # type: ignore[call-arg]
            else:
                fn(work)
        except FunctionFailure as exc:
            text = "\n".join(t for t in (work.stderr, _failure_text(exc)) if t)
            return FunctionOutput(work, stderr=text, exit_code=exc.exit_code or 1)
        except Exception as exc:  # a bug in a builtin is that function's failure, not ours
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            return FunctionOutput(work, stderr=f"failed to evaluate function: {text}", exit_code=1)
        if id(fn) in self._sorted:
            work.items.sort(key=sdk_sort_key)
        # As with kpt, only a non-zero exit fails a step; error results alone do not.
        return FunctionOutput(work, stderr=work.stderr, exit_code=0)


@functools.cache
def _catalog_versions() -> dict[str, list[str]]:
    raw = resources.files("porch.fn").joinpath("data/catalog-versions.json").read_text()
    data = json.loads(raw)
    return {k: [str(v) for v in vs] for k, vs in data.items() if not k.startswith("_")}


_TAKES_TIMEOUT: dict[int, bool] = {}


def _takes_timeout(fn: Builtin) -> bool:
    """Whether a builtin bounds its own run time (``fn(rl, timeout=…)``, e.g. starlark)."""
    known = _TAKES_TIMEOUT.get(id(fn))
    if known is None:
        try:
            known = "timeout" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            known = False
        _TAKES_TIMEOUT[id(fn)] = known
    return known


def _failure_text(exc: FunctionFailure) -> str:
    return exc.message


class Chain:
    """Try each runtime in turn, moving on only when one says "not found"."""

    def __init__(self, runtimes: Sequence[Runtime]) -> None:
        self._runtimes = list(runtimes)

    def run(self, spec: FunctionSpec, rl: ResourceList, *, timeout: float) -> FunctionOutput:
        for runtime in self._runtimes:
            try:
                return runtime.run(spec, rl, timeout=timeout)
            except FunctionNotFound:
                continue
        raise FunctionNotFound(spec.image or spec.exec_path)

    def list_tags(self, image: str) -> list[str]:
        """The tags any link of the chain knows for ``image`` (for ``tag:`` constraints)."""
        tags: list[str] = []
        for runtime in self._runtimes:
            lister = getattr(runtime, "list_tags", None)
            if lister is not None:
                tags.extend(t for t in lister(image) if t not in tags)
        return tags
