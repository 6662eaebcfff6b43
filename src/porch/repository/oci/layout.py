"""Where revisions live in a registry, and how a package becomes an image (docs/oci.md).

* one OCI repository per package: ``<prefix>/<package path>``;
* one tag per revision: ``ws.<workspace>`` for Draft/Proposed, ``v<N>`` for published revision
  N, ``main`` for the placeholder (the latest published content);
* one gzip tar layer holding the whole package (sorted entries, fixed mtimes, owner 0, mode
  0644, gzip mtime 0: the same files always give the same digest);
* everything else in manifest annotations (``kpt.dev/*``).
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from porch.api.types import Lifecycle
from porch.errors import BadRequest, Invalid
from porch.repository.paths import check_file_path

from .client import MANIFEST_TYPE

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"

PACKAGE = "kpt.dev/package"
WORKSPACE = "kpt.dev/workspace"
LIFECYCLE = "kpt.dev/lifecycle"
REVISION = "kpt.dev/revision"
TASKS = "kpt.dev/tasks"
TASK = "kpt.dev/task"
AUTHOR = "kpt.dev/author"
AUTHOR_EMAIL = "kpt.dev/author-email"
SOURCE = "kpt.dev/source-digest"
CREATED = "org.opencontainers.image.created"
REF_NAME = "org.opencontainers.image.ref.name"

WORKING_PREFIX = "ws."
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_VERSION = re.compile(r"v([1-9][0-9]*)")


def repository_name(prefix: str, package: str) -> str:
    if not package or any(not _COMPONENT.fullmatch(p) for p in package.split("/")):
        raise BadRequest(
            f"package path {package!r} cannot be an OCI repository name "
            "(lowercase letters, digits and single separators per segment)"
        )
    return f"{prefix}/{package}" if prefix else package


def package_of(prefix: str, name: str) -> str | None:
    if not prefix:
        return name
    return name[len(prefix) + 1 :] if name.startswith(prefix + "/") else None


def working_tag(workspace: str) -> str:
    tag = WORKING_PREFIX + workspace
    if not workspace or not _TAG.fullmatch(tag):
        raise BadRequest(f"workspace {workspace!r} cannot be used in an OCI tag")
    return tag


def version_tag(revision: int) -> str:
    return f"v{revision}"


def parse_tag(tag: str, branch: str) -> tuple[str, int | str] | None:
    """("working", ws) | ("published", N) | ("placeholder", branch) | None (foreign tag)."""
    if tag.startswith(WORKING_PREFIX) and len(tag) > len(WORKING_PREFIX):
        return "working", tag[len(WORKING_PREFIX) :]
    if tag == branch:
        return "placeholder", branch
    matched = _VERSION.fullmatch(tag)
    if matched:
        return "published", int(matched.group(1))
    return None


def pack(files: Mapping[str, str]) -> tuple[bytes, bytes]:
    """(gzip layer, uncompressed tar); deterministic for the same files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            data = files[path].encode()
            entry = tarfile.TarInfo(path)
            entry.size = len(data)
            entry.mtime = 0
            entry.mode = 0o644
            entry.uid = entry.gid = 0
            entry.uname = entry.gname = ""
            tar.addfile(entry, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, compresslevel=6, mtime=0), plain


def unpack(layer: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer)), mode="r:") as tar:
            for entry in tar:
                if entry.isdir():
                    continue
                if not entry.isfile():
                    raise Invalid(f"package layer holds a non-regular file {entry.name!r}")
                name = entry.name.removeprefix("./")
                check_file_path(name)
                handle = tar.extractfile(entry)
                assert handle is not None
                try:
                    out[name] = handle.read().decode()
                except UnicodeDecodeError:
                    raise Invalid(f"package file {name} is not UTF-8 text") from None
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise Invalid(f"package layer is not a gzip tar: {exc}") from None
    return out


def config_blob(diff_id: str, history: str) -> bytes:
    config = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": history}],
    }
    return orjson.dumps(config, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True)
class Meta:
    """What a manifest's annotations say about a revision."""

    package: str
    workspace: str
    lifecycle: Lifecycle
    revision: int
    tasks: tuple[dict[str, Any], ...]
    author: str
    author_email: str
    created: datetime | None
    source: str  # the placeholder's published manifest digest

    def annotations(self, tag: str, task: Mapping[str, Any] | None) -> dict[str, str]:
        out = {
            PACKAGE: self.package,
            WORKSPACE: self.workspace,
            LIFECYCLE: self.lifecycle.value,
            REVISION: str(self.revision),
            TASKS: orjson.dumps(list(self.tasks), option=orjson.OPT_SORT_KEYS).decode(),
            AUTHOR: self.author,
            AUTHOR_EMAIL: self.author_email,
            REF_NAME: tag,
        }
        if task is not None:
            out[TASK] = orjson.dumps(dict(task), option=orjson.OPT_SORT_KEYS).decode()
        if self.created is not None:
            out[CREATED] = self.created.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.source:
            out[SOURCE] = self.source
        return out


def manifest(config: tuple[str, int], layer: tuple[str, int], annotations: dict[str, str]) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer[0], "size": layer[1]}],
        "annotations": annotations,
    }
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def parse_manifest(body: bytes) -> tuple[dict[str, Any], dict[str, str], str]:
    """(manifest, annotations, layer digest); raises Invalid for anything else."""
    try:
        parsed = orjson.loads(body)
        annotations = {str(k): str(v) for k, v in (parsed.get("annotations") or {}).items()}
        layers = parsed.get("layers") or []
        layer = str(layers[-1]["digest"]) if layers else ""
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, IndexError):
        raise Invalid("not an OCI image manifest") from None
    return parsed, annotations, layer


def meta_from(annotations: Mapping[str, str]) -> Meta | None:
    """None when the manifest was not written by porch."""
    if PACKAGE not in annotations or LIFECYCLE not in annotations:
        return None
    try:
        lifecycle = Lifecycle(annotations[LIFECYCLE])
        revision = int(annotations.get(REVISION, "0"))
        tasks_raw = orjson.loads(annotations.get(TASKS) or "[]")
        tasks = tuple(dict(t) for t in tasks_raw if isinstance(t, dict))
        created_raw = annotations.get(CREATED, "")
        created = (
            datetime.fromisoformat(created_raw.replace("Z", "+00:00")) if created_raw else None
        )
    except (ValueError, orjson.JSONDecodeError, TypeError):
        return None
    return Meta(
        package=annotations[PACKAGE],
        workspace=annotations.get(WORKSPACE, ""),
        lifecycle=lifecycle,
        revision=revision,
        tasks=tasks,
        author=annotations.get(AUTHOR, ""),
        author_email=annotations.get(AUTHOR_EMAIL, ""),
        created=created,
        source=annotations.get(SOURCE, ""),
    )
