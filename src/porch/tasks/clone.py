"""``clone``: a new package from an upstream revision, tracking it like ``kpt pkg get`` (§4.2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from porch.errors import Invalid
from porch.krm.kptfile import (
    PACKAGE_CONTEXT,
    drop_package_context,
    kptfile_set_upstream,
    package_context,
)
from porch.krm.update import add_merge_comments


@dataclass(frozen=True)
class UpstreamLock:
    repo: str
    directory: str
    ref: str
    commit: str

    def normalised(self) -> UpstreamLock:
        """``.git`` appended to the repository, no leading ``/`` on the directory (§11.10)."""
        repo = self.repo if self.repo.endswith(".git") else self.repo + ".git"
        return UpstreamLock(repo, self.directory.lstrip("/"), self.ref, self.commit)


def clone_task(
    source_files: Mapping[str, str],
    *,
    package_path: str,
    upstream: UpstreamLock,
    deployment: bool,
) -> dict[str, str]:
    if "Kptfile" not in source_files:
        raise Invalid(f"cannot find package {upstream.directory}@{upstream.ref}")
    lock = upstream.normalised()
    name = package_path.rsplit("/", 1)[-1]
    files = dict(source_files)
    files["Kptfile"] = kptfile_set_upstream(
        files["Kptfile"],
        name=name,
        upstream={"repo": lock.repo, "directory": lock.directory, "ref": lock.ref},
        lock={
            "repo": lock.repo,
            "directory": lock.directory,
            "ref": lock.ref,
            "commit": lock.commit,
        },
    )
    if deployment:
        # A deployment repository gets its own package context, saying where it lives.
        files = drop_package_context(files)
        files[PACKAGE_CONTEXT] = package_context(name, package_path)
    # kpt's merge keys, so a later upgrade matches resources even after local renames
    return add_merge_comments(files)
