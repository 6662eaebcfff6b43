"""Generate the offline Kubernetes JSON-schema bundle used by the kubeval/kubeconform builtins.

Source: the installed ``kubernetes`` Python client. Its pydantic models give every field's JSON
name (``attribute_map``), type and required-ness; its API modules give each creatable kind's
group/version (the path of the API module that creates the model). The output mirrors what
kubeconform's "standalone" schemas say (nullable optional fields, non-null required ones,
int-or-string and Quantity as ``oneOf``), with shared definitions referenced by ``$ref``.

Usage: ``python tools/gen_kube_schemas.py [OUTPUT]`` (default
``src/porch/fn/data/kube-schemas.json.gz``).
"""

from __future__ import annotations

import datetime
import gzip
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import kubernetes
import pydantic
from kubernetes.client import models

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "src/porch/fn/data/kube-schemas.json.gz"

# Fields whose Go type is resource.Quantity (the client types them as plain strings).
QUANTITY_FIELDS = {
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
    "default",
    "defaultRequest",
    "max",
    "min",
    "maxLimitRequestRatio",
    "podFixed",
    "overhead",
    "allocatedResources",
    "sizeLimit",
    "divisor",
    "maximumVolumeSize",
}

SUBRESOURCE_KINDS = {
    "policy/v1/Eviction": "V1Eviction",
    "autoscaling/v1/Scale": "V1Scale",
    "authentication.k8s.io/v1/TokenRequest": "AuthenticationV1TokenRequest",
}

_VERSION_PREFIX = re.compile(r"^(?:V\d+(?:alpha\d+|beta\d+)?|CoreV1|EventsV1)")


def _nullable(kind: str, required: bool) -> dict[str, Any]:
    return {"type": kind if required else [kind, "null"]}


def _strip(annotation: Any) -> tuple[Any, bool]:
    """(inner annotation, optional?) without Annotated/Optional wrappers."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) < len(typing.get_args(annotation)):
                optional = True
            if len(args) == 1:
                annotation = args[0]
                continue
            return typing.Union[tuple(args)], optional  # noqa: UP007
        return annotation, optional


def _scalar_name(annotation: Any) -> str | None:
    annotation, _ = _strip(annotation)
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "number"
    if annotation in (str, bytes, datetime.datetime, datetime.date):
        return "string"
    return None


def _schema_for(annotation: Any, required: bool, json_name: str) -> dict[str, Any]:
    inner, _ = _strip(annotation)
    origin = typing.get_origin(inner)
    if origin in (typing.Union, types.UnionType):
        names = {_scalar_name(a) for a in typing.get_args(inner)}
        if names == {"integer", "string"}:
            return {"oneOf": [_nullable("string", required), _nullable("integer", required)]}
        if names == {"string"}:
            return _nullable("string", required)
        return {}
    if origin is list:
        (item,) = typing.get_args(inner)
        return {**_nullable("array", required), "items": _schema_for(item, False, "")}
    if origin is dict:
        _key, value = typing.get_args(inner)
        if json_name in QUANTITY_FIELDS:
            element: dict[str, Any] = {
                "oneOf": [_nullable("string", False), _nullable("number", False)]
            }
        else:
            element = _schema_for(value, False, "")
        return {**_nullable("object", required), "additionalProperties": element}
    if isinstance(inner, type) and issubclass(inner, pydantic.BaseModel):
        return {**_nullable("object", required), "$ref": inner.__name__}
    scalar = _scalar_name(inner)
    if scalar is None:
        return {}
    if scalar == "string" and json_name in QUANTITY_FIELDS:
        return {"oneOf": [_nullable("string", required), _nullable("number", required)]}
    out = _nullable(scalar, required)
    if inner is datetime.datetime:
        out["format"] = "date-time"
    return out


def _definition(cls: type[pydantic.BaseModel]) -> dict[str, Any]:
    attribute_map: dict[str, str] = getattr(cls, "attribute_map", {})
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field_name, info in cls.model_fields.items():
        json_name = attribute_map.get(field_name, info.serialization_alias or field_name)
        is_required = info.is_required()
        properties[json_name] = _schema_for(info.annotation, is_required, json_name)
        if is_required:
            required.append(json_name)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    return out


def _kinds() -> dict[str, str]:
    """``group/version/Kind`` (``v1/Kind`` for core) -> model class name."""
    api_dir = Path(kubernetes.client.__file__).parent / "api"
    found: dict[str, str] = {}
    for path in sorted(api_dir.glob("*_api.py")):
        text = path.read_text()
        paths = re.findall(r"resource_path='(/apis?/[^']*)'", text)
        group_version = ""
        for resource_path in paths:
            parts = resource_path.strip("/").split("/")
            if parts[0] == "api" and len(parts) > 1:
                group_version = parts[1]
            elif parts[0] == "apis" and len(parts) > 2:
                group_version = f"{parts[1]}/{parts[2]}"
            if group_version:
                break
        if not group_version:
            continue
        for name in sorted(set(re.findall(r"'201': \"(\w+)\"", text))):
            cls = getattr(models, name, None)
            if cls is None or not {"api_version", "kind"} <= set(cls.model_fields):
                continue
            kind = _VERSION_PREFIX.sub("", name)
            version = group_version.rsplit("/", 1)[-1]
            if not name.lower().startswith(version.lower()) and not name.startswith(
                ("CoreV1", "EventsV1")
            ):
                continue  # e.g. a policy/v1 Eviction created through the core API
            found[f"{group_version}/{kind}"] = name
            found.setdefault(f"{group_version}/{kind}List", name + "List")
    # Kinds created through another group's subresource (pods/eviction, */scale, ...).
    for wrong in ("v1/Eviction", "v1/Scale", "apps/v1/Scale"):
        found.pop(wrong, None)
    found.update(SUBRESOURCE_KINDS)
    return {k: v for k, v in found.items() if getattr(models, v, None) is not None}


def build() -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    for name in sorted(dir(models)):
        cls = getattr(models, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, pydantic.BaseModel)
            and cls.__module__.startswith("kubernetes.client.models")
        ):
            definitions[name] = _definition(cls)
    doc = models.V1ObjectMeta.__module__ and sys.modules[models.V1ObjectMeta.__module__].__doc__
    release = re.search(r"release-(\d+\.\d+)", doc or "")
    return {
        "source": f"kubernetes python client {kubernetes.__version__}",
        "kubernetesVersion": release.group(1) if release else "",
        "kinds": _kinds(),
        "definitions": definitions,
    }


def main(argv: list[str]) -> int:
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    bundle = build()
    data = json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"wrote {output}: {len(bundle['kinds'])} kinds, {len(bundle['definitions'])} definitions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
