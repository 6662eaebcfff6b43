"""Where Porch keeps things in a git repository (spec §5.1) and how file paths are checked."""

from __future__ import annotations

import re
from collections.abc import Mapping

from porch.api.types import Lifecycle
from porch.errors import BadRequest, Invalid

HEADS = "refs/heads/"
TAGS = "refs/tags/"
REMOTE_HEADS = "refs/remotes/origin/"

DRAFTS = "drafts/"
PROPOSED = "proposed/"
DELETION_PROPOSED = "deletionProposed/"

KPTFILE = "Kptfile"

_NUMBERED = re.compile(r"v?([0-9]+)")


def clean_directory(directory: str) -> str:
    return directory.strip("/")


def full_path(directory: str, package: str) -> str:
    """FP: the package directory relative to the repository root."""
    parts = [p for p in (clean_directory(directory), package.strip("/")) if p]
    return "/".join(parts)


def package_of(directory: str, fp: str) -> str | None:
    """The package path relative to ``directory``, or None when ``fp`` lies outside it."""
    if not directory:
        return fp
    if fp.startswith(directory + "/") and len(fp) > len(directory) + 1:
        return fp[len(directory) + 1 :]
    return None


def lifecycle_branch(lifecycle: Lifecycle, fp: str, workspace: str) -> str:
    """Short branch name of a Draft or Proposed revision."""
    if lifecycle is Lifecycle.DRAFT:
        return f"{DRAFTS}{fp}/{workspace}"
    if lifecycle is Lifecycle.PROPOSED:
        return f"{PROPOSED}{fp}/{workspace}"
    raise Invalid(f"lifecycle {lifecycle.value} has no working branch")


def tag_name(fp: str, revision: int) -> str:
    return f"{fp}/v{revision}"


def deletion_marker(fp: str, revision: int, workspace: str) -> str:
    # Porch keys the marker by revision when there is one; the placeholder (and any other
    # unnumbered revision) falls back to the workspace, e.g. ``deletionProposed/FP/main``.
    suffix = f"v{revision}" if revision > 0 else workspace
    return f"{DELETION_PROPOSED}{fp}/{suffix}"


def parse_revision(version: str) -> int:
    """Revision number of a tag's last segment (§1.4): ``v3`` → 3, ``7`` → 7, ``v2.0.0`` → -1."""
    match = _NUMBERED.fullmatch(version)
    return int(match.group(1)) if match else -1


def split_workspace(suffix: str) -> tuple[str, str] | None:
    """``a/b/ws`` → (``a/b``, ``ws``); None when there is no ``/``."""
    fp, sep, workspace = suffix.rpartition("/")
    if not sep or not fp or not workspace:
        return None
    return fp, workspace


def head(branch: str) -> str:
    return HEADS + branch


def tag(name: str) -> str:
    return TAGS + name


_REF_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def check_ref_names(package: str, workspace: str) -> None:
    """Package path and workspace end up in ref names; git forbids much there."""
    if not package or package != package.strip("/"):
        raise BadRequest(f"invalid package path {package!r}")
    _check_segments(package, what="package path")
    for part in [*package.split("/"), workspace]:
        if not _REF_SAFE.fullmatch(part) or part.endswith((".lock", ".")) or ".." in part:
            raise BadRequest(f"{part!r} cannot be used in a git ref name")


def _check_segments(path: str, *, what: str) -> None:
    if "\0" in path:
        raise BadRequest(f"invalid {what} {path!r}: contains NUL")
    if path.startswith("/"):
        raise BadRequest(f"invalid {what} {path!r}: must be relative")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise BadRequest(f"invalid {what} {path!r}: empty, '.' or '..' segment")
        if segment.lower() == ".git":
            raise BadRequest(f"invalid {what} {path!r}: '.git' is reserved")


def encode_files(files: Mapping[str, str]) -> dict[str, bytes]:
    """Check the relative paths of a package's files and encode their contents as UTF-8."""
    encoded: dict[str, bytes] = {}
    for path, content in files.items():
        _check_segments(path, what="file path")
        encoded[path] = content.encode("utf-8")
    if KPTFILE not in encoded:
        raise Invalid("package must contain Kptfile at root")
    # A file and a directory of the same name cannot both exist in one git tree.
    prefixes = {path[:i] for path in encoded for i, ch in enumerate(path) if ch == "/"}
    clashes = sorted(prefixes & encoded.keys())
    if clashes:
        raise BadRequest(f"file path {clashes[0]!r} is also used as a directory")
    return encoded
