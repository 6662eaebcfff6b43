"""Request bodies in, models out: media types, size limits and strict-enough decoding.

kube-apiserver accepts JSON and YAML for writes and JSON/merge/apply patches for PATCH; we do
the same and answer protobuf (kubectl's typed commands send it for core kinds) with 415 so the
client says what went wrong instead of failing to parse.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
import yaml
from starlette.requests import Request

from porch.errors import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

T = TypeVar("T")

JSON = "application/json"
YAML = "application/yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
PROTOBUF = "application/vnd.kubernetes.protobuf"

PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)
_YAML_TYPES = (YAML, "application/x-yaml", "text/yaml", APPLY_PATCH)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` without buffering it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestEntityTooLarge(f"the request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge(
                f"the request body is larger than the limit of {limit} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def decode(raw: bytes, mtype: str, *, patch: bool = False) -> Any:
    """Parse a body by its media type; malformed input is a 400, odd types a 415."""
    if mtype == PROTOBUF:
        raise UnsupportedMediaType(
            "the body of the request was in an unknown format - protobuf is not supported by"
            " this server; send application/json (kubectl create -f / apply -f do)"
        )
    if patch and mtype not in PATCH_TYPES:
        raise UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include:"
            " " + ", ".join(PATCH_TYPES)
        )
    if not raw.strip():
        raise BadRequest("the request body is empty")
    if mtype in _YAML_TYPES:
        try:
            loaded = yaml.load(raw, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise BadRequest(f"error decoding YAML: {exc}") from None
        _check_aliasing(loaded, len(raw))
        return loaded
    if mtype in ("", JSON, MERGE_PATCH, JSON_PATCH, "*/*"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"error decoding JSON: {exc}") from None
    raise UnsupportedMediaType(
        f'the body of the request was in an unknown format "{mtype}" - accepted media types'
        f" include: {JSON}, {YAML}"
    )


def _check_aliasing(value: Any, size: int) -> None:
    """Refuse YAML whose aliases expand to far more nodes than its text has bytes.

    The loader shares aliased nodes, so a "billion laughs" body is small in memory until
    anything walks or serialises it. Without aliases a document cannot have more nodes than
    bytes, so the bound never rejects a plain body.
    """
    budget = size + 10_000
    stack = [value]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise BadRequest("error decoding YAML: document contains excessive aliasing")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def decode_object(raw: bytes, mtype: str) -> dict[str, Any]:
    body = decode(raw, mtype)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that keeps timestamps as strings, as JSON clients would send them."""


# YAML 1.1 would turn ``2024-01-01T00:00:00Z`` into a datetime that JSON cannot carry.
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def to_model(cls: type[T], body: dict[str, Any]) -> T:
    """Build a model; a wrong shape is the client's fault (400), as kube's decoder says."""
    from porch.api._serde import from_dict

    try:
        return from_dict(cls, body)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"error decoding request body: {exc}") from None
