"""Names, DNS-label checks and the deterministic uid of spec §1.2–1.3."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from functools import lru_cache

from porch.errors import BadRequest, Invalid

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SEMVER_WORKSPACE = re.compile(r"\.(v[0-9][0-9.]*[0-9])$")
UID_NAMESPACE = uuid.UUID("aac71d91-5c67-456f-8fd2-902ef6da820e")


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS_LABEL.fullmatch(value))


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(value))


def dns_label_errors(value: str) -> list[str]:
    """The messages Kubernetes' IsDNS1123Label gives, so error texts look familiar."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS_LABEL.fullmatch(value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or"
            " '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or"
            " '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    return errs


def compose_name(repository: str, package: str, workspace: str) -> str:
    """``<repository>.<package path with dots>.<workspace>``."""
    dotted = package.replace("/", ".").strip(".")
    return f"{repository}.{dotted}.{workspace}"


def package_object_name(repository: str, package: str) -> str:
    return f"{repository}.{package.replace('/', '.').strip('.')}"


@dataclass(frozen=True)
class ParsedName:
    repository: str
    dotted_package: str
    workspace: str


def parse_name(name: str) -> ParsedName:
    """Split a PackageRevision name; a ``.vX.Y.Z`` ending is one workspace (spec §1.3)."""
    semver = _SEMVER_WORKSPACE.search(name)
    if semver:
        workspace = semver.group(1)
        rest = name[: semver.start()]
        repo, sep, pkg = rest.partition(".")
    else:
        parts = name.split(".")
        if len(parts) < 3:
            raise BadRequest(f'invalid package revision name "{name}"')
        repo, pkg, workspace, sep = parts[0], ".".join(parts[1:-1]), parts[-1], "."
    if not sep or not repo or not pkg or not workspace:
        raise BadRequest(f'invalid package revision name "{name}"')
    return ParsedName(repo, pkg, workspace)


@lru_cache(maxsize=65536)
def revision_uid(namespace: str, name: str) -> str:
    key = f"packagerevision:porch.kpt.dev/v1alpha1/{namespace}/{name}".lower()
    return str(uuid.uuid5(UID_NAMESPACE, key))


def object_uid(kind: str, group_version: str, namespace: str, name: str) -> str:
    key = f"{kind}:{group_version}/{namespace}/{name}".lower()
    return str(uuid.uuid5(UID_NAMESPACE, key))


def validate_package_revision_names(repository: str, package: str, workspace: str) -> None:
    """All naming checks of §1.3; raises ``Invalid`` with the first failing field."""
    if not is_dns_label(repository):
        raise Invalid(
            f"invalid repository name {repository!r}: " + "; ".join(dns_label_errors(repository))
        )
    if not package:
        raise Invalid("spec.packageName is required")
    if "//" in package or package.startswith("/") or package.endswith("/"):
        raise Invalid(f"invalid packageName {package!r}: must not contain empty path segments")
    if not is_dns_label(package.replace("/", "")):
        raise Invalid(
            f"invalid packageName {package!r}: "
            + "; ".join(dns_label_errors(package.replace("/", "")))
        )
    last = package.rsplit("/", 1)[-1]
    if not is_dns_label(last):
        raise Invalid(f"invalid packageName {package!r}: " + "; ".join(dns_label_errors(last)))
    for segment in package.split("/"):
        if segment in (".", "..") or not is_dns_label(segment):
            raise Invalid(
                f"invalid packageName {package!r}: segment {segment!r} is not a DNS label"
            )
    if not workspace:
        raise Invalid("spec.workspaceName is required")
    if not is_dns_label(workspace):
        raise Invalid(
            f"invalid workspaceName {workspace!r}: " + "; ".join(dns_label_errors(workspace))
        )
    name = compose_name(repository, package, workspace)
    if not is_dns_subdomain(name):
        raise Invalid(
            f"invalid package revision name {name!r}: must be a DNS-1123 subdomain"
            " of at most 253 characters"
        )


_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_NAME_PART_ERROR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an"
    " alphanumeric character"
)
MAX_ANNOTATIONS_BYTES = 256 * 1024


def _qualified_name_error(key: str) -> str:
    """Why ``key`` is not a Kubernetes qualified name (label/annotation key), or ""."""
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return "prefix part must be a lowercase RFC 1123 subdomain of at most 253 characters"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.fullmatch(name):
        return "name part " + _NAME_PART_ERROR
    return ""


def validate_object_meta(meta: dict[str, object]) -> None:
    """Kubernetes' ObjectMeta checks: name, namespace, label keys/values, annotation keys.

    Raises ``Invalid`` (422) naming the field; values are shown escaped, so control
    characters in them cannot forge log lines or terminal output.
    """
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not is_dns_subdomain(name):
        raise Invalid(
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain of at"
            " most 253 characters is required"
        )
    if not isinstance(namespace, str) or not is_dns_label(namespace):
        raise Invalid(
            f"metadata.namespace: Invalid value: {namespace!r}: "
            + "; ".join(dns_label_errors(str(namespace)))
        )
    validate_labels_and_annotations(meta)


def validate_labels_and_annotations(meta: dict[str, object]) -> None:
    """Label keys and values, annotation keys and size, as Kubernetes checks them (422)."""
    for field_name in ("labels", "annotations"):
        values = meta.get(field_name)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise Invalid(f"metadata.{field_name}: Invalid value: must be a map of strings")
        for key, value in values.items():
            error = _qualified_name_error(key) if isinstance(key, str) else "must be a string"
            if error:
                raise Invalid(f"metadata.{field_name}: Invalid value: {key!r}: {error}")
            if not isinstance(value, str):
                raise Invalid(f"metadata.{field_name}[{key}]: Invalid value: must be a string")
            if (
                field_name == "labels"
                and value
                and (len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value))
            ):
                raise Invalid(
                    f"metadata.labels: Invalid value: {value!r}: a valid label must be an empty"
                    f" string or {_NAME_PART_ERROR}, of at most 63 characters"
                )
        if field_name == "annotations":
            size = sum(len(k) + len(str(v)) for k, v in values.items())
            if size > MAX_ANNOTATIONS_BYTES:
                raise Invalid(
                    f"metadata.annotations: Too long: must have at most {MAX_ANNOTATIONS_BYTES}"
                    " bytes"
                )
