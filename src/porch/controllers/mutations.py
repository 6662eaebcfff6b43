"""The edits a PackageVariant makes to its downstream package, as plain functions over files.

Each takes the package's files (path → text) and returns new files; untouched files keep their
bytes, because the round-trip YAML layer only re-serialises documents that really changed.
``same_package`` compares parsed YAML, so a rewrite that only respells a document is no change
and does not make the controller write (or copy a published revision) for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from porch.api.kptfile import KPTFILE
from porch.controllers.types import ReconcileError
from porch.krm.kptfile import (
    PACKAGE_CONTEXT,
    kptfile_sync_conditions,
    kptfile_sync_readiness_gates,
    read_kptfile,
)
from porch.krm.plain import load_plain_all
from porch.krm.yaml import (
    YAMLSyntaxError,
    dump_documents,
    from_plain,
    go_scalar,
    parse_documents,
    to_plain_value,
)

CONTEXT_NAME = "kptfile.kpt.dev"
FUNCTION_PREFIX = "PackageVariant"
INJECTION_ANNOTATION = "kpt.dev/config-injection"
INJECTED_ANNOTATION = "kpt.dev/injected-resource"
INJECTION_CONDITION = "config.injection"

# Looks an in-cluster object up: (group, version, kind, name) → the object, or None if absent.
# Raises ReconcileError for kinds the API server does not serve.
Lookup = Callable[[str, str, str, str], Mapping[str, Any] | None]


def _yaml(path: str) -> bool:
    return path == KPTFILE or path.endswith((".yaml", ".yml"))


def same_package(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    if a.keys() != b.keys():
        return False
    for path, text in a.items():
        other = b[path]
        if text == other:
            continue
        if not _yaml(path):
            return False
        try:
            if load_plain_all(text, filename=path) != load_plain_all(other, filename=path):
                return False
        except (YAMLSyntaxError, ValueError):
            return False
    return True


# --- package context ---------------------------------------------------------------------


def apply_package_context(
    files: Mapping[str, str], data: Mapping[str, str], remove_keys: Sequence[str]
) -> dict[str, str]:
    out = dict(files)
    if not data and not remove_keys:
        return out
    text = files.get(PACKAGE_CONTEXT)
    if text is None:
        raise ReconcileError(f"package has no {PACKAGE_CONTEXT}, cannot apply packageContext")
    docs = parse_documents(text, filename=PACKAGE_CONTEXT)
    target = next(
        (
            o
            for o in docs.objects()
            if o.get("kind") == "ConfigMap"
            and isinstance(o.get("metadata"), Mapping)
            and o["metadata"].get("name") == CONTEXT_NAME
        ),
        None,
    )
    if target is None:
        raise ReconcileError(f"{PACKAGE_CONTEXT} has no ConfigMap {CONTEXT_NAME}")
    current = target.get("data")
    if not isinstance(current, CommentedMap):
        current = CommentedMap()
        target["data"] = current
    changed = False
    for key, value in data.items():
        if str(current.get(key)) != value or key not in current:
            current[key] = go_scalar(str(value))
            changed = True
    for key in remove_keys:
        if key in current:
            del current[key]
            changed = True
    if changed:
        out[PACKAGE_CONTEXT] = dump_documents(docs)
    return out


# --- pipeline ------------------------------------------------------------------------------


def function_name(pv_name: str, fn_name: str, index: int) -> str:
    return f"{FUNCTION_PREFIX}.{pv_name}.{fn_name}.{index}"


def _ours(fn: Any, pv_name: str) -> bool:
    name = str(fn.get("name") or "") if isinstance(fn, Mapping) else ""
    parts = name.split(".")
    return len(parts) >= 3 and parts[0] == FUNCTION_PREFIX and parts[1] == pv_name


def apply_pipeline(
    files: Mapping[str, str], pv_name: str, pipeline: Mapping[str, Any] | None
) -> dict[str, str]:
    """Replace the functions this variant put in the Kptfile pipeline with its current ones,
    placed first; the package's own functions keep their order and comments."""
    out = dict(files)
    text = files.get(KPTFILE)
    if text is None:
        raise ReconcileError("package has no Kptfile")
    docs = parse_documents(text, filename=KPTFILE)
    objects = docs.objects()
    if len(objects) != 1:
        raise ReconcileError("invalid Kptfile: expected exactly one object")
    kptfile = objects[0]
    existing = kptfile.get("pipeline")
    changed = False
    section: CommentedMap = existing if isinstance(existing, CommentedMap) else CommentedMap()
    for field in ("mutators", "validators"):
        have = section.get(field)
        items = list(have) if isinstance(have, CommentedSeq) else []
        wanted_fns = (pipeline or {}).get(field) or []
        ours = []
        for i, fn in enumerate(wanted_fns):
            if not isinstance(fn, Mapping):
                continue
            body = {k: v for k, v in fn.items() if k != "name"}
            ours.append({"name": function_name(pv_name, str(fn.get("name") or ""), i), **body})
        kept = [f for f in items if not _ours(f, pv_name)]
        current_ours = [f for f in items if _ours(f, pv_name)]
        if to_plain_value(current_ours) == ours and items[: len(ours)] == current_ours:
            continue
        changed = True
        final = [from_plain(f) for f in ours] + kept
        if final:
            section[field] = CommentedSeq(final)
        elif field in section:
            del section[field]
    if not changed:
        return out
    if section:
        if not isinstance(existing, CommentedMap):
            kptfile["pipeline"] = section
    elif "pipeline" in kptfile:
        del kptfile["pipeline"]
    out[KPTFILE] = dump_documents(docs)
    return out


# --- config injection ----------------------------------------------------------------------


def _gvk(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    api = str(obj.get("apiVersion") or "")
    group, _, version = api.rpartition("/")
    return group, version, str(obj.get("kind") or "")


def apply_injection(
    files: Mapping[str, str], injectors: Sequence[Mapping[str, Any]], lookup: Lookup
) -> dict[str, str]:
    """Fill every ``kpt.dev/config-injection`` point from the first matching injector and
    record the outcome as Kptfile conditions (readiness gates for required points)."""
    out = dict(files)
    conditions: list[dict[str, str]] = []
    required: list[str] = []
    for path in sorted(files):
        if path == KPTFILE or not _yaml(path):
            continue
        text = files[path]
        if INJECTION_ANNOTATION not in text:
            continue
        docs = parse_documents(text, filename=path)
        changed = False
        for obj in docs.objects():
            meta = obj.get("metadata")
            notes = meta.get("annotations") if isinstance(meta, Mapping) else None
            mode = str(notes.get(INJECTION_ANNOTATION) or "") if isinstance(notes, Mapping) else ""
            if mode not in ("required", "optional"):
                continue
            assert isinstance(meta, CommentedMap) and isinstance(notes, CommentedMap)
            group, version, kind = _gvk(obj)
            cond_type = f"{INJECTION_CONDITION}.{kind}.{meta.get('name')}"
            if mode == "required":
                required.append(cond_type)
            found = _find(injectors, group, version, kind, lookup)
            if found is None:
                conditions.append(
                    {
                        "type": cond_type,
                        "status": "False",
                        "reason": "NoResourceSelected",
                        "message": "no resource matched any injection selector for this"
                        " injection point",
                    }
                )
                continue
            name, source = found
            field = "data" if (group, kind) == ("", "ConfigMap") else "spec"
            wanted = from_plain(source.get(field) or {})
            if to_plain_value(obj.get(field)) != to_plain_value(wanted):
                obj[field] = wanted
                changed = True
            if notes.get(INJECTED_ANNOTATION) != name:
                notes[INJECTED_ANNOTATION] = go_scalar(name)
                changed = True
            conditions.append(
                {
                    "type": cond_type,
                    "status": "True",
                    "reason": "ConfigInjected",
                    "message": f'injected resource "{name}" from cluster',
                }
            )
        if changed:
            out[path] = dump_documents(docs)
    if KPTFILE not in out:
        return out
    kptfile = read_kptfile(out[KPTFILE])
    others = [
        {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
        for c in (kptfile.status.conditions if kptfile.status else [])
        if not c.type.startswith(INJECTION_CONDITION + ".")
    ]
    if conditions or len(others) != len(kptfile.status.conditions if kptfile.status else []):
        out[KPTFILE] = kptfile_sync_conditions(out[KPTFILE], others + conditions)
    gates = [g.condition_type for g in (kptfile.info.readiness_gates if kptfile.info else [])]
    kept = [g for g in gates if not g.startswith(INJECTION_CONDITION + ".")]
    wanted_gates = kept + [g for g in required if g not in kept]
    if wanted_gates != gates:
        out[KPTFILE] = kptfile_sync_readiness_gates(out[KPTFILE], wanted_gates)
    return out


def _find(
    injectors: Sequence[Mapping[str, Any]], group: str, version: str, kind: str, lookup: Lookup
) -> tuple[str, Mapping[str, Any]] | None:
    for injector in injectors:
        if injector.get("group") and injector["group"] != group:
            continue
        if injector.get("version") and injector["version"] != version:
            continue
        if injector.get("kind") and injector["kind"] != kind:
            continue
        name = str(injector.get("name") or "")
        found = lookup(group, version, kind, name)
        if found is not None:
            return name, found
    return None
