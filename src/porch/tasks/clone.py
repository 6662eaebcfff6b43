"""``clone``: a new package from an upstream revision, tracking it like ``kpt pkg get`` (§4.2).

The upstream is either git (``upstream.git`` + ``upstreamLock.git`` with the commit) or an OCI
image (kpt's ``type: oci`` form: ``upstream.oci.image`` as referenced, ``upstreamLock.oci.image``
pinned to the manifest digest, ``<registry>/<name>@sha256:…``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ruamel.yaml.comments import CommentedMap

from porch.errors import Invalid
from porch.krm.kptfile import (
    PACKAGE_CONTEXT,
    drop_package_context,
    kptfile_set_upstream,
    package_context,
)
from porch.krm.update import add_merge_comments
from porch.krm.yaml import dump_documents, go_scalar, parse_documents


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

    def describe(self) -> str:
        return f"{self.directory}@{self.ref}"


@dataclass(frozen=True)
class OciUpstreamLock:
    """An OCI image upstream: ``image`` as referenced (tag or digest), ``digest`` as resolved."""

    image: str
    digest: str

    @property
    def locked_image(self) -> str:
        """``image`` pinned to the digest: the tag (or an older digest) replaced."""
        name = self.image.split("@", 1)[0]
        head, sep, last = name.rpartition("/")
        if sep and ":" in last:
            name = f"{head}/{last.rsplit(':', 1)[0]}"
        return f"{name}@{self.digest}" if self.digest else self.image

    def describe(self) -> str:
        return self.image


Upstream = UpstreamLock | OciUpstreamLock


def clone_task(
    source_files: Mapping[str, str],
    *,
    package_path: str,
    upstream: Upstream,
    deployment: bool,
) -> dict[str, str]:
    if "Kptfile" not in source_files:
        raise Invalid(f"cannot find package {upstream.describe()}")
    name = package_path.rsplit("/", 1)[-1]
    files = dict(source_files)
    files["Kptfile"] = set_upstream(files["Kptfile"], name=name, upstream=upstream)
    if deployment:
        # A deployment repository gets its own package context, saying where it lives.
        files = drop_package_context(files)
        files[PACKAGE_CONTEXT] = package_context(name, package_path)
    # kpt's merge keys, so a later upgrade matches resources even after local renames
    return add_merge_comments(files)


def set_upstream(text: str, *, name: str, upstream: Upstream) -> str:
    """Point the Kptfile at ``upstream`` (git or OCI), dropping the other origin's section."""
    if isinstance(upstream, UpstreamLock):
        lock = upstream.normalised()
        text = kptfile_set_upstream(
            text,
            name=name,
            upstream={"repo": lock.repo, "directory": lock.directory, "ref": lock.ref},
            lock={
                "repo": lock.repo,
                "directory": lock.directory,
                "ref": lock.ref,
                "commit": lock.commit,
            },
        )
        # Only a Kptfile that came from an OCI upstream has anything to drop; the others
        # are left byte for byte as kptfile_set_upstream wrote them.
        return _drop_origin(text, "oci") if "oci" in text else text
    # kptfile_set_upstream also sets metadata.name (and keeps every other field and comment);
    # the git sections it writes are then replaced by the OCI ones.
    text = kptfile_set_upstream(text, name=name, upstream={}, lock={})
    docs = parse_documents(text, filename="Kptfile")
    (obj,) = docs.objects()
    for field, image in (
        ("upstream", upstream.image),
        ("upstreamLock", upstream.locked_image),
    ):
        section = obj[field]
        assert isinstance(section, CommentedMap)
        section["type"] = "oci"
        section.pop("git", None)
        section.pop("oci", None)
        oci = CommentedMap()
        oci["image"] = go_scalar(image)
        keys = list(section)
        section.insert(keys.index("type") + 1, "oci", oci)
    return dump_documents(docs)


def _drop_origin(text: str, origin: str) -> str:
    docs = parse_documents(text, filename="Kptfile")
    objects = docs.objects()
    changed = False
    for obj in objects[:1]:
        for field in ("upstream", "upstreamLock"):
            section = obj.get(field)
            if isinstance(section, CommentedMap) and origin in section:
                del section[origin]
                changed = True
    return dump_documents(docs) if changed else text
