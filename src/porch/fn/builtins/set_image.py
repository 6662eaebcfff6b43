"""set-image: give the container images named ``name`` a new name, tag or digest.

The config is a ConfigMap (``data: {name, newName, newTag, digest}``) or a
``fn.kpt.dev/v1alpha1 SetImage`` (``image: {...}`` plus ``additionalImageFields``, field specs
``{group, version, kind, path: a/b[]/c}`` naming more image fields). Containers are looked
for in Pods (``spec``) and in Deployments, StatefulSets, ReplicaSets, DaemonSets and
PodTemplates (``spec.template.spec``). As in the catalog's function, only ``containers`` are
visited there (its code asks for ``iniContainers``, so init containers are left alone), and a
new name without a new tag or digest is joined to the old tag without a colon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from porch.fn.builtins._paths import assign, file_index, file_path, restyle_string, scalar_text
from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm.yaml import go_scalar

_WORKLOADS = ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "PodTemplate")
_IMAGE_KEYS = ("name", "newName", "newTag", "digest")


class _Die(Exception):
    def __init__(self, message: str, obj: CommentedMap | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.obj = obj


@dataclass
class _Image:
    name: str = ""
    new_name: str = ""
    new_tag: str = ""
    digest: str = ""
    tag_suffix: str = ""

    @classmethod
    def of(cls, node: Any) -> _Image:
        if not isinstance(node, dict):
            return cls()
        return cls(
            name=_text(node.get("name")),
            new_name=_text(node.get("newName")),
            new_tag=_text(node.get("newTag")),
            digest=_text(node.get("digest")),
            tag_suffix=_text(node.get("tagSuffix")),
        )


@dataclass
class _FieldSpec:
    group: str
    version: str
    kind: str
    path: list[str]


@dataclass
class _SetImage:
    image: _Image = field(default_factory=_Image)
    config_image: _Image = field(default_factory=_Image)
    additional: list[_FieldSpec] | None = None
    count: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)


def _text(value: Any) -> str:
    return "" if value is None else scalar_text(value)


def _ident(obj: CommentedMap) -> tuple[str, str, str, str]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return (
        _text(obj.get("apiVersion")),
        _text(obj.get("kind")),
        _text(meta.get("name")),
        _text(meta.get("namespace")),
    )


def _object_result(message: str, severity: str, obj: CommentedMap | None) -> dict[str, Any]:
    result: dict[str, Any] = {"message": message, "severity": severity}
    if obj is not None:
        api_version, kind, name, namespace = _ident(obj)
        ref = {"apiVersion": api_version, "kind": kind, "name": name}
        if namespace:
            ref["namespace"] = namespace
        result["resourceRef"] = {k: v for k, v in ref.items() if v}
        file: dict[str, Any] = {}
        if file_path(obj):
            file["path"] = file_path(obj)
        if file_index(obj):
            file["index"] = file_index(obj)
        if file:
            result["file"] = file
    return result


def _short(obj: CommentedMap) -> str:
    api_version, kind, name, namespace = _ident(obj)
    return f"Resource(apiVersion={api_version}, kind={kind}, namespace={namespace}, name={name})"


def _configure(fc: CommentedMap | None, state: _SetImage) -> None:
    if fc is None or not fc:
        state.results.append({"message": "`FunctionConfig` is not given", "severity": "info"})
        return
    api_version, kind, _, _ = _ident(fc)
    if api_version == "v1" and kind == "ConfigMap":
        data = fc.get("data")
        for key, value in data.items() if isinstance(data, dict) else []:
            if key not in _IMAGE_KEYS:
                raise _Die(f"ConfigMap has wrong field name {key}")
            setattr(state.image, _attr(str(key)), _text(value))
        return
    if api_version == "fn.kpt.dev/v1alpha1" and kind == "SetImage":
        state.image = _Image.of(fc.get("image"))
        state.config_image = _Image.of(fc.get("image"))
        data = fc.get("data")
        for key, value in data.items() if isinstance(data, dict) else []:
            if key not in _IMAGE_KEYS:
                raise _Die(f"ConfigMap has wrong field name {key}")
            setattr(state.image, _attr(str(key)), _text(value))
        extra = fc.get("additionalImageFields")
        if extra is not None:
            state.additional = [_field_spec(fs) for fs in (extra or [])]
        return
    raise _Die(f"unknown FunctionConfig `{kind}`, expect SetImage", fc)


def _attr(key: str) -> str:
    return {"name": "name", "newName": "new_name", "newTag": "new_tag", "digest": "digest"}[key]


def _field_spec(node: Any) -> _FieldSpec:
    if not isinstance(node, dict):
        raise _Die("additionalImageFields entries must be objects")
    path = _text(node.get("path"))
    return _FieldSpec(
        group=_text(node.get("group")),
        version=_text(node.get("version")),
        kind=_text(node.get("kind")),
        path=path.split("/"),
    )


def is_image_matched(value: str, name: str) -> bool:
    try:
        pattern = re.compile("^" + name + r"(:[a-zA-Z0-9_.{}-]*)?(@sha256:[a-zA-Z0-9_.{}-]*)?\Z")
    except re.error:
        return False
    return pattern.match(value) is not None


def split_image(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference, the tag and digest without ``:``/``@``."""
    search = image
    slash = image.find("/")
    if slash > 0:
        search = image[slash:]
    else:
        slash = 0
    at = search.find("@")
    colon = search.find(":")
    if colon < 0 and at < 0:
        return image, "", ""
    if at >= 0 and (at < colon or colon < 0):
        at += slash
        return image[:at], "", image[at:].removeprefix("@")
    if at >= 0 and colon >= 0:
        at += slash
        colon += slash
        return image[:colon], image[colon:at].removeprefix(":"), image[at:].removeprefix("@")
    colon += slash
    return image[:colon], image[colon:].removeprefix(":"), ""


def _new_image_name(old: str, image: _Image) -> str:
    name, tag, digest = split_image(old)
    if image.new_name:
        name = image.new_name
    if image.new_tag:
        tag = ":" + image.new_tag
    if image.digest:
        tag = "@" + image.digest
    return name + digest if tag == "" else name + tag


def _update_containers(pod_spec: Any, state: _SetImage, obj: CommentedMap) -> None:
    if not isinstance(pod_spec, dict):
        return
    containers = pod_spec.get("containers")
    if not isinstance(containers, CommentedSeq):
        return
    for container in containers:
        if not isinstance(container, CommentedMap):
            continue
        old_raw = container.get("image")
        if isinstance(old_raw, CommentedMap | CommentedSeq):
            raise _Die("image field of a container must be a string", obj)
        old = _text(old_raw)
        if not is_image_matched(old, state.image.name):
            continue
        new = _new_image_name(old, state.image)
        if new == old:
            continue
        assign(container, "image", go_scalar(new))
        state.count += 1


def _kustomize_image_value(old: str, image: _Image) -> str:
    name, tag, digest = split_image(old)
    if image.new_name:
        name = image.new_name
    if image.new_tag and image.digest:
        tag, digest = image.new_tag, image.digest
    elif image.new_tag:
        tag, digest = image.new_tag, ""
    elif image.digest:
        tag, digest = "", image.digest
    elif image.tag_suffix:
        tag, digest = tag + image.tag_suffix, ""
    if tag:
        name += ":" + tag
    if digest:
        name += "@" + digest
    return name


def _apply_field_spec(obj: CommentedMap, fs: _FieldSpec, state: _SetImage) -> None:
    kind = _text(obj.get("kind"))
    if fs.kind and fs.kind != kind:
        return
    api_version = _text(obj.get("apiVersion"))
    group, _, version = api_version.rpartition("/")
    if fs.group and fs.group != group:
        return
    if fs.version and fs.version != version:
        return
    _walk_field_spec(obj, fs.path, state, obj, "/".join(fs.path))


def _walk_field_spec(
    node: Any, path: list[str], state: _SetImage, obj: CommentedMap, spec_path: str
) -> None:
    if isinstance(node, CommentedSeq):
        for element in list(node):
            _walk_field_spec(element, path, state, obj, spec_path)
        return
    if not isinstance(node, CommentedMap):
        raise _Die(
            f"considering field '{spec_path}' of object {_resid(obj)}: "
            "expected sequence or mapping node",
            obj,
        )
    head = path[0].removesuffix("[]")
    if head == "":
        raise _Die("cannot set or create an empty field name", obj)
    value = node.get(head)
    if value is None:
        return
    if len(path) > 1:
        _walk_field_spec(value, path[1:], state, obj, spec_path)
        return
    _set_image_value(node, head, value, state, obj, spec_path)


def _set_image_value(
    container: Any, key: Any, value: Any, state: _SetImage, obj: CommentedMap, spec_path: str
) -> None:
    if isinstance(value, CommentedMap | CommentedSeq):
        got = "MappingNode" if isinstance(value, dict) else "SequenceNode"
        raise _Die(
            f"considering field '{spec_path}' of object {_resid(obj)}: wrong node kind: "
            f"expected ScalarNode but got {got}",
            obj,
        )
    old = _text(value)
    if not is_image_matched(old, state.config_image.name):
        return
    state.count += 1
    assign(container, key, restyle_string(value, _kustomize_image_value(old, state.config_image)))


def _resid(obj: CommentedMap) -> str:
    api_version, kind, name, namespace = _ident(obj)
    group, _, version = api_version.rpartition("/")
    gvk = f"{group}_{version}_{kind}" if group else f"{version}_{kind}"
    return f"{gvk}|{namespace or '~X'}|{name}"


@register("set-image")
def set_image(rl: ResourceList) -> None:
    state = _SetImage()
    try:
        _configure(rl.function_config, state)
        if not state.image.name:
            raise _Die("must specify `name`")
        if not (state.image.new_name or state.image.new_tag or state.image.digest):
            raise _Die("must specify one of `newName`, `newTag`, or `digest`")
    except _Die as exc:
        rl.results.extend(state.results)
        rl.results.append(_object_result(exc.message, "error", exc.obj))
        end = (
            f"function is terminated by {_short(exc.obj)}: {exc.message}"
            if exc.obj is not None
            else f"function is terminated: {exc.message}"
        )
        rl.results.append({"message": end, "severity": "error"})
        raise FunctionFailure(f"failed to evaluate function: {end}") from exc
    rl.results.extend(state.results)
    for obj in rl.items:
        kind = _text(obj.get("kind"))
        try:
            spec = obj.get("spec")
            if kind == "Pod":
                _update_containers(spec, state, obj)
            elif kind in _WORKLOADS and isinstance(spec, dict):
                template = spec.get("template")
                if isinstance(template, dict):
                    _update_containers(template.get("spec"), state, obj)
        except _Die as exc:
            rl.results.append(_object_result(exc.message, "error", obj))
    if state.additional is not None:
        for obj in rl.items:
            if _text(obj.get("kind")) == "CustomResourceDefinition":
                continue
            for fs in state.additional:
                try:
                    _apply_field_spec(obj, fs, state)
                except _Die as exc:
                    rl.results.append(_object_result(exc.message, "error", obj))
    rl.results.append(
        {"message": f"summary: updated a total of {state.count} image(s)", "severity": "info"}
    )
