"""Field and label selectors for lists and watches (spec §1.8)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from porch.api.types import Lifecycle
from porch.errors import BadRequest

REVISION_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "spec.revision",
    "spec.packageName",
    "spec.repository",
    "spec.workspaceName",
    "spec.lifecycle",
)
PACKAGE_FIELDS = ("metadata.name", "metadata.namespace", "spec.packageName", "spec.repository")
_KPT_LABEL = re.compile(r"^spec\.packageMetadata\.labels\[(.*)\]$")


@dataclass
class RevisionFilter:
    """What a list or watch of PackageRevisions asks for; empty fields match anything."""

    namespace: str | None = None
    name: str = ""
    repository: str = ""
    package: str = ""
    workspace: str = ""
    revision: int = 0  # 0 matches any revision (Porch quirk kept: spec.revision=0 filters nothing)
    lifecycle: str = ""
    kptfile_labels: dict[str, str] = field(default_factory=dict)
    labels: LabelSelector | None = None

    def matches(
        self,
        *,
        namespace: str,
        name: str,
        repository: str,
        package: str,
        workspace: str,
        revision: int,
        lifecycle: str,
        kptfile_labels: Mapping[str, str],
        labels: Mapping[str, str],
    ) -> bool:
        if self.namespace is not None and namespace != self.namespace:
            return False
        if self.name and name != self.name:
            return False
        if not self.name:
            if self.repository and repository != self.repository:
                return False
            if self.package and package != self.package:
                return False
            if self.workspace and workspace != self.workspace:
                return False
            if self.revision and revision != self.revision:
                return False
            if self.lifecycle and lifecycle != self.lifecycle:
                return False
        for key, value in self.kptfile_labels.items():
            if kptfile_labels.get(key) != value:
                return False
        return self.labels is None or self.labels.matches(labels)


def _terms(selector: str) -> list[tuple[str, str]]:
    out = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            raise BadRequest(f"unsupported fieldSelector operator in {term!r}: only = and ==")
        if "==" in term:
            key, value = term.split("==", 1)
        elif "=" in term:
            key, value = term.split("=", 1)
        else:
            raise BadRequest(f"invalid fieldSelector {term!r}: expected key=value")
        key, value = key.strip(), value.strip()
        if not value:
            raise BadRequest(f"fieldSelector {key!r} must have a value")
        out.append((key, value))
    return out


def parse_revision_filter(
    namespace: str | None, field_selector: str = "", label_selector: str = ""
) -> RevisionFilter:
    f = RevisionFilter(namespace=namespace)
    for key, value in _terms(field_selector):
        if key == "metadata.name":
            f.name = value
        elif key == "metadata.namespace":
            if namespace is not None and namespace != value:
                raise BadRequest("conflicting namespaces specified")
            f.namespace = value
        elif key == "spec.revision":
            digits = value[1:] if value.startswith("v") else value
            f.revision = int(digits) if digits.lstrip("-").isdigit() else -1
        elif key == "spec.packageName":
            f.package = value
        elif key == "spec.repository":
            f.repository = value
        elif key == "spec.workspaceName":
            f.workspace = value
        elif key == "spec.lifecycle":
            if value not in tuple(Lifecycle):
                raise BadRequest(f"unsupported lifecycle value {value!r} in fieldSelector")
            f.lifecycle = value
        elif m := _KPT_LABEL.match(key):
            if not m.group(1):
                raise BadRequest("spec.packageMetadata.labels[] needs a label key")
            f.kptfile_labels[m.group(1)] = value
        else:
            raise BadRequest(f'unknown fieldSelector field "{key}"')
    if label_selector:
        f.labels = LabelSelector.parse(label_selector)
    return f


@dataclass
class PackageFilter:
    namespace: str | None = None
    name: str = ""
    repository: str = ""
    package: str = ""


def parse_package_filter(
    namespace: str | None, field_selector: str = "", *, fields: tuple[str, ...] = PACKAGE_FIELDS
) -> PackageFilter:
    """Selectors on metadata and, where ``fields`` allow, ``spec.packageName``/``repository``."""
    f = PackageFilter(namespace=namespace)
    for key, value in _terms(field_selector):
        if key not in fields:
            raise BadRequest(f'unknown fieldSelector field "{key}"')
        if key == "metadata.name":
            f.name = value
        elif key == "metadata.namespace":
            if namespace is not None and namespace != value:
                raise BadRequest("conflicting namespaces specified")
            f.namespace = value
        elif key == "spec.packageName":
            f.package = value
        else:
            f.repository = value
    return f


def parse_object_filter(namespace: str | None, field_selector: str = "") -> PackageFilter:
    """Stored kinds (Repository, Secret, …) select on ``metadata.name``/``namespace`` only."""
    return parse_package_filter(namespace, field_selector, fields=PACKAGE_FIELDS[:2])


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_SET_TERM = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # != and notin


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @staticmethod
    def parse(selector: str) -> LabelSelector:
        terms: list[str] = []
        depth, start = 0, 0
        for i, ch in enumerate(selector):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 0:
                terms.append(selector[start:i])
                start = i + 1
        terms.append(selector[start:])
        reqs = []
        for raw in terms:
            term = raw.strip()
            if not term:
                continue
            if m := _SET_TERM.match(term):
                key, op = m.group(1), m.group(2)
                values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
                reqs.append(Requirement(_key(key), op, values))
            elif "!=" in term:
                key, value = term.split("!=", 1)
                reqs.append(Requirement(_key(key), "!=", frozenset({value.strip()})))
            elif "==" in term or "=" in term:
                key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
                reqs.append(Requirement(_key(key), "=", frozenset({value.strip()})))
            elif term.startswith("!"):
                reqs.append(Requirement(_key(term[1:]), "!exists"))
            else:
                reqs.append(Requirement(_key(term), "exists"))
        return LabelSelector(tuple(reqs))


def _key(raw: str) -> str:
    key = raw.strip()
    if not _LABEL_KEY.match(key):
        raise BadRequest(f"unable to parse requirement: invalid label key {key!r}")
    return key
