"""Checks on the file names of a package, shared by every adapter."""

from __future__ import annotations

from collections.abc import Mapping

from porch.errors import BadRequest, Invalid


def check_file_path(path: str) -> None:
    """Refuse names that could escape the package directory or confuse git."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise BadRequest(f"invalid file name {path!r}: must be a relative path")
    for segment in path.split("/"):
        if segment in ("", ".", "..") or segment.lower() == ".git":
            raise BadRequest(f"invalid file name {path!r}: segment {segment!r} is not allowed")
        if any(ord(ch) < 0x20 for ch in segment):
            raise BadRequest(f"invalid file name {path!r}: control characters are not allowed")


def check_package_files(files: Mapping[str, str]) -> None:
    for path in files:
        check_file_path(path)
    if "Kptfile" not in files:
        raise Invalid("package must contain Kptfile at root")
