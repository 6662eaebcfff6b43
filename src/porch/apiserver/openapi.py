"""OpenAPI v3 documents generated from the dataclass models.

kubectl needs them for ``apply``/``replace`` validation (without them it refuses unless
``--validate=false``) and ``kubectl explain`` reads them. Schemas come from walking the models'
type hints with the same JSON names ``porch.api._serde`` writes. The PATCH operations list
only the patch types we accept: listing strategic merge makes kubectl try it and warn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
from typing import Any, Union, get_args, get_origin, get_type_hints

import orjson

from porch.api._serde import camel
from porch.api.types import ObjectMeta
from porch.apiserver.kinds import ResourceType
from porch.apiserver.registry import Registry

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
FREE_FORM: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)

SECRET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Secret holds secret data of a certain type.",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"$ref": f"#/components/schemas/{META}.ObjectMeta"},
        "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "stringData": {"type": "object", "additionalProperties": {"type": "string"}},
        "type": {"type": "string"},
        "immutable": {"type": "boolean"},
    },
}


def _schema_name(cls_name: str, rt: ResourceType) -> str:
    if cls_name == "ObjectMeta":
        return f"{META}.ObjectMeta"
    group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{group}.{rt.version}.{cls_name}"


class _Builder:
    def __init__(self, rt: ResourceType, schemas: dict[str, Any]) -> None:
        self._rt = rt
        self.schemas = schemas

    def ref(self, cls: type) -> dict[str, Any]:
        name = _schema_name(cls.__name__, self._rt)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder breaks recursion
            self.schemas[name] = self.object(cls)
        return {"$ref": f"#/components/schemas/{name}"}

    def object(self, cls: type) -> dict[str, Any]:
        hints = get_type_hints(cls)
        props = {}
        for f in dataclasses.fields(cls):
            prop = self.hint(hints[f.name])
            if "$ref" not in prop:  # siblings of a $ref are ignored in OpenAPI 3.0
                prop = {**prop, **f.metadata.get("schema", {})}
            props[f.metadata.get("json", camel(f.name))] = prop
        return {"type": "object", "properties": props}

    def hint(self, hint: Any) -> dict[str, Any]:
        origin = get_origin(hint)
        if origin is Union or origin is types.UnionType:
            args = [a for a in get_args(hint) if a is not type(None)]
            return self.hint(args[0])
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self.ref(hint)
        if origin in (list, tuple):
            return {"type": "array", "items": self.hint(get_args(hint)[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.hint(get_args(hint)[1])}
        if hint is bool:
            return {"type": "boolean"}
        if hint is int:
            return {"type": "integer", "format": "int64"}
        if hint is str or (isinstance(hint, type) and issubclass(hint, str)):
            return {"type": "string"}
        return {"x-kubernetes-preserve-unknown-fields": True}


def _kind_schema(rt: ResourceType, schemas: dict[str, Any]) -> str:
    gvk = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
    if rt.model is not None:
        _Builder(rt, schemas).ref(rt.model)
        name = _schema_name(rt.model.__name__, rt)
    else:
        name = _schema_name(rt.kind, rt)
        base = (
            SECRET_SCHEMA
            if rt.kind == "Secret"
            else {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"$ref": f"#/components/schemas/{META}.ObjectMeta"},
                    "spec": FREE_FORM,
                    "status": FREE_FORM,
                },
            }
        )
        schemas[name] = dict(base)
        _Builder(rt, schemas).ref(ObjectMeta)
    schemas[name]["x-kubernetes-group-version-kind"] = gvk
    return name


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def _op(rt: ResourceType, ref: str, action: str, *, body: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "version": rt.version,
            "kind": rt.kind,
        },
        "parameters": [_param("fieldManager"), _param("fieldValidation"), _param("dryRun")],
        "responses": {"200": {"content": {"application/json": {"schema": {"$ref": ref}}}}},
    }
    if body:
        out["requestBody"] = {"content": {t: {"schema": {"$ref": ref}} for t in body}}
    return out


def group_document(registry: Registry, group: str, version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    for rt in registry.in_version(group, version):
        ref = f"#/components/schemas/{_kind_schema(rt, schemas)}"
        collection, item = {}, {}
        if rt.supports("list"):
            collection["get"] = _op(rt, ref, "list")
        if rt.supports("create"):
            collection["post"] = _op(rt, ref, "post", body=("application/json",))
        if rt.supports("get"):
            item["get"] = _op(rt, ref, "get")
        if rt.supports("update"):
            item["put"] = _op(rt, ref, "put", body=("application/json",))
        if rt.supports("patch"):
            item["patch"] = _op(rt, ref, "patch", body=PATCH_TYPES)
        if rt.supports("delete"):
            item["delete"] = _op(rt, ref, "delete")
        base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}"
        paths[base] = collection
        paths[base + "/{name}"] = item
        for sub in rt.subresources:
            paths[f"{base}/{{name}}/{sub}"] = {
                "get": _op(rt, ref, "get"),
                "put": _op(rt, ref, "put", body=("application/json",)),
                "patch": _op(rt, ref, "patch", body=PATCH_TYPES),
            }
    return {
        "openapi": "3.0.0",
        "info": {"title": "porch", "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }


class OpenAPI:
    """Documents are built once; the hash in the root's URLs lets clients cache them."""

    def __init__(self, registry: Registry) -> None:
        self.documents: dict[str, bytes] = {}
        for rt in registry.types:
            key = f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"
            if key not in self.documents:
                self.documents[key] = orjson.dumps(group_document(registry, rt.group, rt.version))
        self.root = {
            "paths": {
                key: {
                    "serverRelativeURL": f"/openapi/v3/{key}?hash="
                    + hashlib.sha256(doc).hexdigest()[:32].upper()
                }
                for key, doc in self.documents.items()
            }
        }
