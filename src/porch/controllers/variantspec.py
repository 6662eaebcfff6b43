"""A PackageVariant's spec, checked once and then read as typed values.

Validation collects every problem at once, so a user fixing a spec sees them all in one
``Stalled`` message rather than one per edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from porch.controllers.types import ValidationError

ADOPT_NONE, ADOPT_EXISTING = "adoptNone", "adoptExisting"
DELETE, ORPHAN = "delete", "orphan"
FORBIDDEN_CONTEXT_KEYS = ("name", "package-path")

# In-cluster kinds an injector may name: this API server serves no ConfigMaps, so only its own
# config kinds can be injected (their ``spec`` is copied). Secrets are never copied into git.
INJECTABLE = {("config.porch.kpt.dev", "v1alpha1", "Repository"): "repositories"}


@dataclass(frozen=True)
class Upstream:
    repo: str
    package: str
    revision: int = 0
    workspace_name: str = ""

    def describe(self) -> str:
        pick = self.workspace_name or (f"v{self.revision}" if self.revision > 0 else "latest")
        return f"{self.repo}/{self.package}@{pick}"


@dataclass(frozen=True)
class VariantSpec:
    upstream: Upstream
    downstream_repo: str
    downstream_package: str
    adoption_policy: str = ADOPT_NONE
    deletion_policy: str = DELETE
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    context_data: dict[str, str] = field(default_factory=dict)
    context_remove: tuple[str, ...] = ()
    pipeline: dict[str, Any] | None = None
    injectors: tuple[dict[str, Any], ...] = ()


def parse_revision(value: Any) -> int:
    """``3``, ``"3"`` or ``"v3"`` → 3; empty → 0 (not set); anything else → -1 (invalid)."""
    if value in (None, "", 0):
        return 0
    text = str(value)
    text = text[1:] if text[:1] in "vV" else text
    return int(text) if text.isdigit() else -1


def _str_map(value: Any, where: str, errors: list[str]) -> dict[str, str]:
    if value in (None, {}):
        return {}
    if not isinstance(value, Mapping):
        errors.append(f"{where} must be a map of strings")
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _text(section: Mapping[str, Any], key: str, where: str, errors: list[str]) -> str:
    value = section.get(key)
    if not value:
        errors.append(f"missing required field {where}.{key}")
        return ""
    return str(value)


def injector_problem(injector: Mapping[str, Any]) -> str:
    """Why an injector can never match here, or "" if it may."""
    group, version, kind = (str(injector.get(k) or "") for k in ("group", "version", "kind"))
    if not kind and not group:
        return ""
    for g, v, k in INJECTABLE:
        if (not group or group == g) and (not version or version == v) and (not kind or kind == k):
            return ""
    supported = ", ".join(f"{k} ({g}/{v})" for g, v, k in INJECTABLE)
    what = "/".join(p for p in (group, version, kind) if p)
    reason = " (this API server serves no ConfigMaps)" if kind == "ConfigMap" else ""
    return (
        f'injector kind "{what}" is not served by this Porch API server{reason};'
        f" supported injector kinds: {supported}"
    )


def validate(spec: Mapping[str, Any]) -> VariantSpec:
    errors: list[str] = []
    up = spec.get("upstream")
    down = spec.get("downstream")
    upstream = Upstream("", "")
    if not isinstance(up, Mapping):
        errors.append("missing required field spec.upstream")
    else:
        revision = parse_revision(up.get("revision"))
        if revision < 0:
            errors.append(f'spec.upstream.revision "{up.get("revision")}" is not a number')
        upstream = Upstream(
            _text(up, "repo", "spec.upstream", errors),
            _text(up, "package", "spec.upstream", errors),
            max(revision, 0),
            str(up.get("workspaceName") or ""),
        )
    repo = package = ""
    if not isinstance(down, Mapping):
        errors.append("missing required field spec.downstream")
    else:
        repo = _text(down, "repo", "spec.downstream", errors)
        package = _text(down, "package", "spec.downstream", errors)
    adoption = str(spec.get("adoptionPolicy") or ADOPT_NONE)
    if adoption not in (ADOPT_NONE, ADOPT_EXISTING):
        errors.append(
            f'spec.adoptionPolicy "{adoption}" must be one of {ADOPT_NONE}, {ADOPT_EXISTING}'
        )
    deletion = str(spec.get("deletionPolicy") or DELETE)
    if deletion not in (DELETE, ORPHAN):
        errors.append(f'spec.deletionPolicy "{deletion}" must be one of {DELETE}, {ORPHAN}')
    context = spec.get("packageContext") or {}
    if not isinstance(context, Mapping):
        errors.append("spec.packageContext must be an object")
        context = {}
    data = _str_map(context.get("data"), "spec.packageContext.data", errors)
    remove = [str(k) for k in context.get("removeKeys") or []]
    for key in FORBIDDEN_CONTEXT_KEYS:
        if key in data:
            errors.append(f'spec.packageContext.data cannot use the key "{key}"')
        if key in remove:
            errors.append(f'spec.packageContext.removeKeys cannot contain the key "{key}"')
    pipeline = spec.get("pipeline")
    if pipeline is not None and not isinstance(pipeline, Mapping):
        errors.append("spec.pipeline must be an object")
        pipeline = None
    for section in ("mutators", "validators"):
        for i, fn in enumerate((pipeline or {}).get(section) or []):
            if not isinstance(fn, Mapping) or not (fn.get("image") or fn.get("exec")):
                errors.append(f"spec.pipeline.{section}[{i}] needs an image")
    injectors = spec.get("injectors") or []
    for i, injector in enumerate(injectors):
        if not isinstance(injector, Mapping) or not injector.get("name"):
            errors.append(f"spec.injectors[{i}].name is required")
        elif problem := injector_problem(injector):
            errors.append(f"spec.injectors[{i}]: {problem}")
    if errors:
        raise ValidationError("; ".join(errors))
    return VariantSpec(
        upstream=upstream,
        downstream_repo=repo,
        downstream_package=package,
        adoption_policy=adoption,
        deletion_policy=deletion,
        labels=_str_map(spec.get("labels"), "spec.labels", errors),
        annotations=_str_map(spec.get("annotations"), "spec.annotations", errors),
        context_data=data,
        context_remove=tuple(remove),
        pipeline=dict(pipeline) if pipeline else None,
        injectors=tuple(dict(i) for i in injectors),
    )
